// The sign-in panel (paste a token) and who is signed in, in the header, with a sign-out button.
import type { ConnectError } from "@connectrpc/connect";
import { describeError } from "./api";
import { claims, clearToken, normalise, setToken, token } from "./auth";
import { field, h, hideError } from "./dom";

const LOCAL_COMMAND = "faceflow auth token --role reviewer";

function element(id: string): HTMLElement {
  return document.getElementById(id) as HTMLElement;
}

/** Hides the pages and shows the panel; `reason` is the server's sentence when a token was refused. */
export function showSignIn(onSignedIn: () => void, reason?: ConnectError): void {
  for (const dialog of document.querySelectorAll("dialog[open]")) (dialog as HTMLDialogElement).close();
  hideError();
  element("main").hidden = true;
  element("main").replaceChildren(h("p", {}, "Loading…")); // nothing of the last session stays in the page
  element("nav").hidden = true;
  element("session").hidden = true;
  const panel = element("signin");

  const input = h("textarea", {
    id: "signin-token",
    rows: 4,
    required: true,
    autocomplete: "off",
    spellcheck: "false",
    autocapitalize: "off",
    placeholder: "eyJ…",
  });
  const problem = h("p", { class: "signin-error", role: "alert", id: "signin-error", hidden: !reason });
  if (reason) problem.append(h("strong", {}, "Not signed in: "), describeError(reason));
  const submit = h("button", { type: "submit" }, "Sign in");
  const form = h(
    "form",
    { class: "card", "aria-labelledby": "signin-title" },
    field("Access token", input, "a JWT; kept in this browser tab only, forgotten when the tab closes"),
    h("div", { class: "buttons" }, submit),
  );
  // One line of text: Enter signs in, as in every other form of the UI.
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    try {
      setToken(normalise(input.value));
    } catch (error) {
      problem.replaceChildren(h("strong", {}, "Not signed in: "), error instanceof Error ? error.message : String(error));
      problem.hidden = false;
      input.focus();
      return;
    }
    onSignedIn();
  });

  panel.replaceChildren(
    h("h1", { id: "signin-title" }, "Sign in"),
    h("p", {}, "Every call to the services carries your access token; its roles decide what you may do (viewer: read; reviewer: also run, upload, review, enrol; admin: also delete)."),
    problem,
    form,
    h(
      "div",
      { class: "signin-hint" },
      h("h2", {}, "Where to get a token"),
      h("p", {}, "On the local stack (", h("code", {}, "faceflow up --web"), "), print one and paste it above:"),
      h("pre", {}, h("code", { id: "signin-command" }, LOCAL_COMMAND)),
      h("p", { class: "meta" }, "Add ", h("code", {}, "--data-root DIR"), " if the stack was started with one; ", h("code", {}, "--role viewer"), " to only read, ", h("code", {}, "--role admin"), " to delete."),
      h("p", {}, "In a real deployment, use your organisation's sign-in: it hands this page a token."),
    ),
  );
  panel.hidden = false;
  input.focus();
}

/** The pages back, and the signed-in user in the header (from the token's payload, for display only). */
export function showApp(onSignOut: () => void): void {
  element("signin").hidden = true;
  element("signin").replaceChildren();
  element("nav").hidden = false;
  element("main").hidden = false;
  const current = token();
  const box = element("session");
  if (!current) {
    box.hidden = true;
    return;
  }
  const who = claims(current);
  const roles = who.roles.length ? who.roles.join(", ") : "no role named";
  const signOut = h("button", { type: "button", class: "sign-out", id: "sign-out" }, "Sign out");
  signOut.addEventListener("click", () => {
    clearToken();
    onSignOut();
  });
  box.replaceChildren(
    h(
      "span",
      { class: "who", title: who.expires ? `token expires ${who.expires.toLocaleString()}` : "" },
      "Signed in as ",
      h("strong", { id: "session-user" }, who.subject),
      " · ",
      h("span", { id: "session-roles" }, roles),
    ),
    signOut,
  );
  box.hidden = false;
}
