// The signed-in user's own page: role, second factor and recovery codes left; set up a second factor by choice (an admin
// off loopback is made to at sign-in), and replace the recovery codes with a current code from the authenticator.
import { useEffect, useState } from "preact/hooks";
import { api, type MfaEnrolment, type SessionUser } from "../api";

/** The authenticator's secret as a QR code and as text, and the field for its first code. */
export function MfaEnrolForm({ enrolment, intro, busy, error, onConfirm }: {
  enrolment: MfaEnrolment; intro: string; busy: boolean; error?: string; onConfirm: (code: string) => void;
}) {
  const [code, setCode] = useState("");
  return <form onSubmit={e => { e.preventDefault(); onConfirm(code); setCode(""); }} aria-labelledby="enrol-title">
    <h1 id="enrol-title">Set up a second factor</h1>
    <p>{intro} Scan this code, or type the secret in, then enter the 6-digit code it shows.</p>
    <img class="qr" src={`data:image/svg+xml;base64,${btoa(enrolment.qrSvg)}`} alt="QR code of the authenticator secret" width={200} height={200} />
    <p>Secret: <code id="mfa-secret">{enrolment.secret}</code></p>
    <label for="enrol-code">Code from the app</label>
    <input id="enrol-code" name="code" inputMode="numeric" autocomplete="one-time-code" required value={code} onInput={e => setCode(e.currentTarget.value)} />
    {error && <p class="note error" role="alert">{error}</p>}
    <button type="submit" class="primary" disabled={busy || !code}>Confirm</button>
  </form>;
}

/** Recovery codes, shown once. */
export function RecoveryCodeList({ codes }: { codes: string[] }) {
  return <>
    <p>Keep these somewhere safe: each signs you in once without the app. They are not shown again.</p>
    <ul class="recovery-codes" aria-label="Recovery codes">{codes.map(c => <li><code>{c}</code></li>)}</ul>
  </>;
}

export function AccountView() {
  const [me, setMe] = useState<SessionUser | null>();
  const [enrolment, setEnrolment] = useState<MfaEnrolment>();
  const [codes, setCodes] = useState<string[]>([]);
  const [code, setCode] = useState("");
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);

  const load = () => api.me().then(setMe, () => setMe(null));
  useEffect(() => { load(); }, []);

  const run = async (action: () => Promise<void>) => {
    setBusy(true);
    setError(undefined);
    try { await action(); } catch (err) { setError(err instanceof Error ? err.message : String(err)); } finally { setBusy(false); }
  };

  if (me === undefined) return <section><h1>Account</h1><p>Loading…</p></section>;
  if (me === null) return <section><h1>Account</h1><p>This session was opened with an API key, not as a user: there is no account to manage.</p></section>;
  if (enrolment) {
    return <section class="account">
      <MfaEnrolForm enrolment={enrolment} intro="Use an authenticator app." busy={busy} error={error} onConfirm={c => run(async () => {
        const confirmed = await api.confirmMfa(c);
        setEnrolment(undefined);
        setCodes(confirmed.recoveryCodes);
        await load();
      })} />
    </section>;
  }
  return <section class="account">
    <h1>Account</h1>
    <dl class="facts">
      <dt>User</dt><dd id="account-user">{me.user}</dd>
      <dt>Role</dt><dd>{me.role}</dd>
      <dt>Second factor</dt><dd id="account-mfa">{me.mfaEnabled ? "on (authenticator app)" : "off"}</dd>
      {me.mfaEnabled && <><dt>Recovery codes left</dt><dd id="account-codes-left">{me.recoveryCodesLeft}</dd></>}
    </dl>
    {codes.length > 0 && <section aria-labelledby="codes-title">
      <h2 id="codes-title">New recovery codes</h2>
      <RecoveryCodeList codes={codes} />
      <button type="button" onClick={() => setCodes([])}>I have saved them</button>
    </section>}
    {!me.mfaEnabled ? <section aria-labelledby="mfa-title">
      <h2 id="mfa-title">Second factor</h2>
      <p>With a second factor, a sign-in needs a code from an authenticator app as well as the password.</p>
      {error && <p class="note error" role="alert">{error}</p>}
      <button type="button" class="primary" disabled={busy} onClick={() => run(async () => setEnrolment(await api.beginMfa()))}>Set up a second factor</button>
    </section> : <form aria-labelledby="renew-title" onSubmit={e => {
      e.preventDefault();
      run(async () => { setCodes((await api.renewRecoveryCodes(code)).recoveryCodes); setCode(""); await load(); });
    }}>
      <h2 id="renew-title">Replace the recovery codes</h2>
      <p>The codes you have stop working. Enter a current code from your authenticator app (not a recovery code).</p>
      <label for="renew-code">Code from the app</label>
      <input id="renew-code" name="code" inputMode="numeric" autocomplete="one-time-code" required value={code} onInput={e => setCode(e.currentTarget.value)} />
      {error && <p class="note error" role="alert">{error}</p>}
      <button type="submit" class="primary" disabled={busy || !code}>Replace them</button>
    </form>}
  </section>;
}
