// Sign-in when the server needs credentials: a user's name and password, then a TOTP or recovery code when the user has
// one; or an API key. Either is sent once and exchanged for an HttpOnly session cookie. An admin signing in off loopback
// without a second factor enrols one here before anything else.
import { useState } from "preact/hooks";
import { api, type MfaEnrolment } from "../api";
import { MfaEnrolForm, RecoveryCodeList } from "./account";

type Step = "password" | "code" | "key" | "enrol" | "codes";  // "key": the last attempt was with an API key

export function Login({ onSignedIn }: { onSignedIn: (scopes: string[]) => void }) {
  const [step, setStep] = useState<Step>("password");
  const [user, setUser] = useState("");
  const [password, setPassword] = useState("");
  const [code, setCode] = useState("");
  const [key, setKey] = useState("");
  const [enrolment, setEnrolment] = useState<MfaEnrolment>();
  const [recoveryCodes, setRecoveryCodes] = useState<string[]>([]);
  const [scopes, setScopes] = useState<string[]>([]);
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);

  const attempt = async (action: () => Promise<void>) => {
    setBusy(true);
    setError(undefined);
    try {
      await action();
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  };
  const run = (action: () => Promise<void>) => (e: Event) => { e.preventDefault(); return attempt(action); };

  // A browser keeps the Secure cookie over https and on loopback only: say so rather than loop back to this form.
  const finish = async (granted?: string[]) => {
    const session = await api.session();
    if (!session.authenticated) {
      setError("Signed in, but this browser did not keep the session cookie: off loopback, serve the dashboard over https.");
      return;
    }
    onSignedIn(granted ?? session.scopes ?? []);
  };

  const signInUser = run(async () => {
    if (step === "key") setStep("password");
    const answer = await api.userLogin(user, password, step === "code" ? code : undefined);
    setCode("");
    if (answer.codeRequired) { setStep("code"); return; }
    setPassword("");
    if (answer.enrolmentRequired) {
      setEnrolment(await api.beginMfa());
      setStep("enrol");
      return;
    }
    await finish(answer.scopes);
  });

  const signInKey = run(async () => {
    await api.login(key);
    setKey("");
    await finish();
  });

  const confirmEnrolment = (enrolCode: string) => attempt(async () => {
    const confirmed = await api.confirmMfa(enrolCode);
    setRecoveryCodes(confirmed.recoveryCodes);
    setScopes(confirmed.scopes);
    setStep("codes");
  });

  if (step === "enrol" && enrolment) {
    return <main class="login" id="main">
      <MfaEnrolForm enrolment={enrolment} intro="An admin signing in from another machine needs an authenticator app." busy={busy} error={error} onConfirm={confirmEnrolment} />
    </main>;
  }
  if (step === "codes") {
    return <main class="login" id="main">
      <section aria-labelledby="codes-title">
        <h1 id="codes-title">Recovery codes</h1>
        <RecoveryCodeList codes={recoveryCodes} />
        {error && <p class="note error" role="alert">{error}</p>}
        <button type="button" class="primary" onClick={run(() => finish(scopes))}>I have saved them</button>
      </section>
    </main>;
  }
  // Both ways on one page: a user's name and password (then a code), or an API key.
  return <main class="login" id="main">
    <form onSubmit={signInUser} aria-labelledby="login-title">
      <h1 id="login-title">Conveyor</h1>
      {step !== "code" ? <>
        <p>This server needs you to sign in, as a user or with an API key.</p>
        <label for="user-name">User</label>
        <input id="user-name" name="username" autocomplete="username" required value={user} onInput={e => setUser(e.currentTarget.value)} />
        <label for="user-password">Password</label>
        <input id="user-password" name="password" type="password" autocomplete="current-password" required value={password} onInput={e => setPassword(e.currentTarget.value)} />
      </> : <>
        <p>Enter the 6-digit code from your authenticator app, or one of your recovery codes.</p>
        <label for="user-code">Code</label>
        <input id="user-code" name="code" autocomplete="one-time-code" required value={code} onInput={e => setCode(e.currentTarget.value)} />
      </>}
      {error && step !== "key" && <p class="note error" role="alert">{error}</p>}
      <button type="submit" class="primary" disabled={busy || !user || !password || (step === "code" && !code)}>{step === "code" ? "Verify" : "Continue"}</button>
    </form>
    {step === "password" || step === "key" ? <form onSubmit={e => { setStep("key"); return signInKey(e); }} aria-label="Sign-in by key">
      <h2>Or with an API key</h2>
      <p>The key is sent once and exchanged for a session cookie that this browser keeps; the key itself is not stored.</p>
      <label for="api-key">API key</label>
      <input id="api-key" name="key" type="password" autocomplete="off" required value={key} onInput={e => setKey(e.currentTarget.value)} />
      {error && step === "key" && <p class="note error" role="alert">{error}</p>}
      <button type="submit" class="primary" disabled={busy || !key}>Sign in</button>
    </form> : null}
  </main>;
}
