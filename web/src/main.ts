// faceflow review UI: a token first (sign-in panel), then hash routes to pages; every page reads the
// services through gRPC-Web with that token.
import type { ConnectError } from "@connectrpc/connect";
import { connect } from "./api";
import { onSessionEnded, token } from "./auth";
import { hideError, showError } from "./dom";
import { dispatch, route } from "./router";
import { showApp, showSignIn } from "./signin";
import { episodePage } from "./pages/episode";
import { episodesPage } from "./pages/episodes";
import { facebankPage } from "./pages/facebank";
import { facesPage } from "./pages/faces";
import { screenTimePage } from "./pages/screentime";
import { showPage, showsPage } from "./pages/show";

route(/^\/$/, () => episodesPage());
route(/^\/episodes\/([^/]+)$/, (ep) => episodePage(ep));
route(/^\/episodes\/([^/]+)\/faces$/, (ep) => facesPage(ep));
route(/^\/episodes\/([^/]+)\/screen-time$/, (ep) => screenTimePage(ep));
route(/^\/facebank(?:\/([^/]+))?$/, (show) => facebankPage(show || "default"));
route(/^\/shows$/, () => showsPage());
route(/^\/shows\/([^/]+)(?:\/season\/(\d+))?$/, (show, season) => showPage(show, season));

async function show(): Promise<void> {
  if (!token()) return signIn();
  hideError();
  document.body.dataset.loading = "true";
  try {
    await dispatch();
  } catch (error) {
    showError(error);
  } finally {
    delete document.body.dataset.loading;
  }
}

/** The panel; after sign-in, the page the address names (the same one after a refused token). */
function signIn(reason?: ConnectError): void {
  showSignIn(signedIn, reason);
}

function signedIn(): void {
  showApp(() => signIn());
  void show();
}

document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && !document.querySelector("dialog[open]")) hideError();
});
window.addEventListener("hashchange", () => void show());
onSessionEnded((error) => signIn(error));
connect().then(() => (token() ? signedIn() : signIn()), showError);
