// Who calls: the bearer token, kept in sessionStorage (this tab only, gone when it closes; never
// localStorage), sent on every call by one interceptor. Its claims are read for display only: the
// services and Envoy verify the token and decide what it allows.
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";

const STORAGE_KEY = "faceflow.token";

export function token(): string {
  try {
    return sessionStorage.getItem(STORAGE_KEY) ?? "";
  } catch {
    return ""; // storage disabled: no session survives, the sign-in panel asks again
  }
}

export function setToken(value: string): void {
  sessionStorage.setItem(STORAGE_KEY, value);
}

export function clearToken(): void {
  try {
    sessionStorage.removeItem(STORAGE_KEY);
  } catch {
    // nothing stored
  }
}

/** What a pasted value must look like before it is sent anywhere: a JWT's three base64url parts. */
export function normalise(pasted: string): string {
  // A terminal may wrap a long token: whitespace is never part of one.
  const value = pasted.trim().replace(/^bearer\s+/i, "").replace(/\s+/g, "");
  if (!value) throw new Error("paste a token first");
  if (!/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(value)) {
    throw new Error("that is not a token: a JWT is three base64url parts separated by dots (eyJ….eyJ….…)");
  }
  return value;
}

export interface Claims {
  subject: string;
  roles: string[];
  expires?: Date;
}

/** The payload's `sub`, `roles` and `exp`, unverified: for showing who is signed in, never for deciding. */
export function claims(jwt: string): Claims {
  try {
    const part = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const bytes = Uint8Array.from(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "=")), (c) => c.charCodeAt(0));
    const payload = JSON.parse(new TextDecoder().decode(bytes)) as Record<string, unknown>;
    const roles = Array.isArray(payload.roles) ? payload.roles.filter((r): r is string => typeof r === "string") : [];
    return {
      subject: typeof payload.sub === "string" && payload.sub ? payload.sub : "unknown user",
      roles,
      expires: typeof payload.exp === "number" ? new Date(payload.exp * 1000) : undefined,
    };
  } catch {
    return { subject: "unknown user", roles: [] };
  }
}

type SessionEnded = (error: ConnectError) => void;
let sessionEnded: SessionEnded = () => undefined;

/** Called when a call comes back UNAUTHENTICATED: the token is already cleared. */
export function onSessionEnded(listener: SessionEnded): void {
  sessionEnded = listener;
}

/** `authorization: Bearer …` on every call; an UNAUTHENTICATED answer (expired, invalid, missing token),
 * at the start of a call or in a stream's trailers, ends the session. */
export const bearer: Interceptor = (next) => async (request) => {
  const sent = token();
  if (sent) request.header.set("authorization", `Bearer ${sent}`);
  try {
    const response = await next(request);
    if (response.stream) return { ...response, message: watched(response.message, sent) };
    return response;
  } catch (error) {
    throw rejected(error, sent);
  }
};

async function* watched<T>(messages: AsyncIterable<T>, sent: string): AsyncIterable<T> {
  try {
    yield* messages;
  } catch (error) {
    throw rejected(error, sent);
  }
}

function rejected(error: unknown, sent: string): unknown {
  // A late failure of a token already replaced (signed out and in again) ends nothing.
  if (error instanceof ConnectError && error.code === Code.Unauthenticated && sent === token()) {
    clearToken();
    sessionEnded(error);
  }
  return error;
}

export function isUnauthenticated(error: unknown): boolean {
  return error instanceof ConnectError && error.code === Code.Unauthenticated;
}
