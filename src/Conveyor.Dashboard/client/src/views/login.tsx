// Sign-in when the server has API keys: the key is sent once and exchanged for an HttpOnly session cookie.
import { useState } from "preact/hooks";
import { api } from "../api";

export function Login({ onSignedIn }: { onSignedIn: (scopes: string[]) => void }) {
  const [key, setKey] = useState("");
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      await api.login(key);
      setKey("");
      // A browser keeps the Secure cookie over https and on loopback only: say so rather than loop back to this form.
      const session = await api.session();
      if (!session.authenticated) {
        setError("The key is right, but this browser did not keep the session cookie: off loopback, serve the dashboard over https.");
        return;
      }
      onSignedIn(session.scopes ?? []);
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  };
  return <main class="login" id="main">
    <form onSubmit={submit} aria-labelledby="login-title">
      <h1 id="login-title">Conveyor</h1>
      <p>This server needs an API key. It is sent once and exchanged for a session cookie that this browser keeps; the key itself is not stored.</p>
      <label for="api-key">API key</label>
      <input id="api-key" name="key" type="password" autocomplete="current-password" required value={key} onInput={e => setKey(e.currentTarget.value)} />
      {error && <p class="note error" role="alert">{error}</p>}
      <button type="submit" class="primary" disabled={busy || !key}>Sign in</button>
    </form>
  </main>;
}
