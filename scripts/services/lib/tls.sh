#!/usr/bin/env bash
# Sourced by scripts/services/*.sh: makes a private certificate authority and a server certificate signed by it, for a
# test server's TLS listener. Debian's openssl; ECDSA P-256 keys (fast to make, understood by PostgreSQL, Redis, Erlang
# and .NET). Not a service itself (test.sh sources only scripts/services/*.sh).
#   _cv_tls_make DIR   writes DIR/ca.pem (what clients trust), DIR/ca.key, DIR/server.pem and DIR/server.key
# The server certificate names IP 127.0.0.1 only, where the test servers listen: a client that connects to
# 'localhost' finds a name the certificate does not hold, which the tests use to check host name verification.
# The CA is made afresh at each start and its key kept beside it only as long as the server's folder lives.

_cv_tls_make() {
  local dir="$1"
  if ! command -v openssl >/dev/null 2>&1; then
    echo "tls: installing Debian's openssl package" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openssl >&2 \
      || { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openssl >&2; } \
      || { echo "tls: could not install openssl" >&2; return 1; }
  fi
  mkdir -p "$dir" || return 1
  (
    set -e
    umask 077
    openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -sha256 -days 30 \
      -subj "/CN=Conveyor test CA $$" -keyout "$dir/ca.key" -out "$dir/ca.pem" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -sha256 \
      -subj "/CN=127.0.0.1" -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
    printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
      "extendedKeyUsage=serverAuth" "subjectAltName=IP:127.0.0.1" > "$dir/server.ext"
    openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial -sha256 -days 30 \
      -extfile "$dir/server.ext" -out "$dir/server.pem" 2>/dev/null
    rm -f "$dir/server.csr" "$dir/server.ext" "$dir/ca.srl"
    # Clients (the tests, any user) read the CA certificate; the keys stay private to the server's owner.
    chmod 644 "$dir/ca.pem" "$dir/server.pem"
  ) || { echo "tls: openssl could not make the test certificates in $dir" >&2; return 1; }
}
