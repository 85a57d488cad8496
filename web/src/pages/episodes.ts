// Episodes: list, upload a new one, open, set the show / season / number, delete (with or without S3
// objects), delete all.
import { getApi } from "../api";
import type { Episode } from "../gen/faceflow/v1/storage_pb";
import { act, field, h, link, notice, render, seconds } from "../dom";
import { uploadEpisode } from "../upload";
import { navigate } from "../router";
import { showHref } from "./show";

const DELETE_ALL_PHRASE = "delete all episodes";

export async function episodesPage(message?: string): Promise<void> {
  const { episodes } = await getApi().storage.listEpisodes({});
  render(
    h("h1", {}, "Episodes"),
    message ? notice(message) : null,
    episodes.length ? episodeTable(episodes) : h("p", { class: "empty" }, "No episodes yet: upload a video below."),
    uploadForm(),
    deleteAllForm(episodes.length),
  );
}

function episodeTable(episodes: Episode[]): HTMLElement {
  const rows = episodes.map((ep) =>
    h(
      "tr",
      { "data-episode": ep.epId },
      h("th", { scope: "row" }, link(`#/episodes/${ep.epId}`, ep.epId)),
      h("td", {}, link(showHref(ep.showId), ep.showId || "default")),
      h("td", { class: "num season" }, ep.season ? String(ep.season) : "—"),
      h("td", { class: "num number" }, ep.episodeNumber ? String(ep.episodeNumber) : "—"),
      h("td", {}, ep.video ? `${ep.video.width}×${ep.video.height}` : "-"),
      h("td", { class: "num" }, ep.video ? seconds(ep.video.durationS) : "-"),
      h("td", {}, ep.currentRunId || "not run yet"),
      h(
        "td",
        { class: "actions" },
        link(`#/episodes/${ep.epId}/faces`, "Faces"),
        link(`#/episodes/${ep.epId}/screen-time`, "Screen time"),
        h("button", { type: "button", onclick: () => setShow(ep) }, "Set show…"),
        h("button", { type: "button", class: "danger", onclick: () => confirmDelete(ep.epId) }, "Delete…"),
      ),
    ),
  );
  return h(
    "table",
    { class: "episodes" },
    h("caption", { class: "sr-only" }, "Stored episodes"),
    h("thead", {}, h("tr", {}, ...["Episode", "Show", "Season", "No.", "Video", "Duration", "Current run", "Actions"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, ...rows),
  );
}

/** A dialog for the episode's show, season and number (SetEpisodeShow); errors stay in the dialog. */
function setShow(ep: Episode): void {
  const show = h("input", { type: "text", required: true, value: ep.showId || "default", id: "set-show", pattern: "[a-z0-9_\\-][a-z0-9_.\\-]{0,63}" });
  const season = h("input", { type: "number", min: "0", max: "1000", step: "1", value: String(ep.season), id: "set-season" });
  const number = h("input", { type: "number", min: "0", step: "1", value: String(ep.episodeNumber), id: "set-number" });
  const save = h("button", { type: "submit" }, "Save");
  const problem = h("p", { class: "dialog-error", role: "alert", hidden: true });
  const form = h(
    "form",
    { method: "dialog" },
    h("h2", { id: "set-show-title" }, `Show of ${ep.epId}`),
    h("p", {}, "The show whose facebank names its people, and where it sits in the show (0: not set)."),
    h("div", { class: "fields" }, field("Show", show), field("Season", season), field("Episode number", number)),
    h("div", { class: "buttons" }, save, h("button", { type: "button", onclick: () => dialog.close() }, "Cancel")),
    problem,
  );
  const dialog = h("dialog", { "aria-labelledby": "set-show-title" }, form);
  dialog.addEventListener("close", () => dialog.remove());
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!form.reportValidity()) return;
    void act(save, async () => {
      const episode = await getApi().orchestrator.setEpisodeShow({
        epId: ep.epId,
        showId: show.value.trim(),
        season: Number(season.value || 0),
        episodeNumber: Number(number.value || 0),
      });
      dialog.close();
      const where = [episode.season ? `season ${episode.season}` : "", episode.episodeNumber ? `episode ${episode.episodeNumber}` : ""].filter(Boolean);
      const done = `${episode.epId} is in show ${episode.showId || "default"}${where.length ? `, ${where.join(", ")}` : ""}.`;
      void act(null, () => episodesPage(done));
    }, problem);
  });
  document.body.append(dialog);
  dialog.showModal();
  show.focus();
}

function confirmDelete(epId: string): void {
  const s3 = h("input", { type: "checkbox", id: "delete-s3" });
  const confirm = h("button", { type: "submit", class: "danger" }, "Delete episode");
  // In the dialog, not the page's banner behind it: e.g. a reviewer's token may not delete.
  const problem = h("p", { class: "dialog-error", role: "alert", hidden: true });
  const dialog = h(
    "dialog",
    { "aria-labelledby": "delete-title" },
    h(
      "form",
      { method: "dialog" },
      h("h2", { id: "delete-title" }, `Delete ${epId}?`),
      h("p", {}, "Its video, runs, crops and review log are removed. This cannot be undone."),
      h("div", { class: "check" }, s3, h("label", { for: "delete-s3" }, "Also delete S3 artifacts")),
      h("div", { class: "buttons" }, confirm, h("button", { type: "button", onclick: () => dialog.close() }, "Cancel")),
      problem,
    ),
  );
  dialog.addEventListener("close", () => dialog.remove());
  confirm.addEventListener("click", (event) => {
    event.preventDefault();
    void act(confirm, async () => {
      const result = await getApi().storage.deleteEpisode({ epId, includeS3: s3.checked });
      dialog.close();
      const done = `Deleted ${epId}: ${result.localDirsRemoved} local folder(s) and ${result.s3ObjectsRemoved} S3 object(s) removed.`;
      void act(null, () => episodesPage(done));
    }, problem);
  });
  document.body.append(dialog);
  dialog.showModal();
}

function slug(name: string): string {
  return name.replace(/\.[^.]*$/, "").toLowerCase().replace(/[^a-z0-9_.-]+/g, "-").replace(/^[-.]+|-+$/g, "").slice(0, 64);
}

function uploadForm(): HTMLElement {
  const file = h("input", { type: "file", accept: "video/*", required: true, id: "upload-file" });
  const epId = h("input", { type: "text", required: true, pattern: "[a-z0-9_\\-][a-z0-9_.\\-]{0,63}", id: "upload-episode" });
  const show = h("input", { type: "text", value: "default", id: "upload-show" });
  const bar = h("progress", { max: 1, value: 0, hidden: true, "aria-label": "Upload progress" });
  const submit = h("button", { type: "submit" }, "Upload");
  file.addEventListener("change", () => {
    if (file.files?.[0] && !epId.value) epId.value = slug(file.files[0].name);
  });
  const form = h(
    "form",
    { class: "card", "aria-labelledby": "upload-title" },
    h("h2", { id: "upload-title" }, "New episode"),
    field("Video file", file),
    field("Episode id", epId, "lower-case letters, digits, - _ ."),
    field("Show", show, "whose facebank names the people"),
    h("div", { class: "buttons" }, submit, bar),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const video = file.files?.[0];
    if (!video) return;
    void act(submit, async () => {
      bar.hidden = false;
      bar.max = video.size;
      const episode = await uploadEpisode(video, { epId: epId.value, showId: show.value, replaceVideo: false }, (sent) => {
        bar.value = sent;
      });
      navigate(`#/episodes/${episode.epId}`);
    });
  });
  return form;
}

function deleteAllForm(count: number): HTMLElement {
  const phrase = h("input", { type: "text", autocomplete: "off", id: "delete-all-phrase" });
  const s3 = h("input", { type: "checkbox", id: "delete-all-s3" });
  const submit = h("button", { type: "submit", class: "danger", disabled: true }, "Delete all episodes");
  phrase.addEventListener("input", () => {
    submit.disabled = phrase.value !== DELETE_ALL_PHRASE;
  });
  const form = h(
    "form",
    { class: "card danger-zone", "aria-labelledby": "delete-all-title" },
    h("h2", { id: "delete-all-title" }, "Delete all episodes"),
    h("p", {}, `Removes all ${count} episode(s). Type “${DELETE_ALL_PHRASE}” to confirm.`),
    field("Confirmation", phrase),
    h("div", { class: "check" }, s3, h("label", { for: "delete-all-s3" }, "Also delete S3 artifacts")),
    h("div", { class: "buttons" }, submit),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    void act(submit, async () => {
      const result = await getApi().storage.deleteAllEpisodes({ confirm: phrase.value, includeS3: s3.checked });
      await episodesPage(
        `Deleted ${result.episodesDeleted} episode(s): ${result.localDirsRemoved} local folder(s) and ` +
          `${result.s3ObjectsRemoved} S3 object(s) removed.`,
      );
    });
  });
  return form;
}
