// faceflow review UI: hash routes to pages; every page reads the services through gRPC-Web.
import { connect } from "./api";
import { hideError, showError } from "./dom";
import { dispatch, route } from "./router";
import { episodePage } from "./pages/episode";
import { episodesPage } from "./pages/episodes";
import { facebankPage } from "./pages/facebank";
import { facesPage } from "./pages/faces";
import { screenTimePage } from "./pages/screentime";

route(/^\/$/, () => episodesPage());
route(/^\/episodes\/([^/]+)$/, (ep) => episodePage(ep));
route(/^\/episodes\/([^/]+)\/faces$/, (ep) => facesPage(ep));
route(/^\/episodes\/([^/]+)\/screen-time$/, (ep) => screenTimePage(ep));
route(/^\/facebank(?:\/([^/]+))?$/, (show) => facebankPage(show || "default"));

async function show(): Promise<void> {
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

document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && !document.querySelector("dialog[open]")) hideError();
});
window.addEventListener("hashchange", () => void show());
connect().then(show, showError);
