// Faces review: identity rows of crops, with rename / merge / add to the facebank, and a track view
// with move / remove / delete / harvest. Every change is a Review call; the page then re-renders from
// the returned state.
import { getApi } from "../api";
import type { MessageInitShape } from "@bufbuild/protobuf";
import {
  JobState,
  type Progress,
  type RejectedImage,
  type ReviewedIdentity,
  type ReviewOpSchema,
  type ReviewState,
} from "../gen/faceflow/v1/orchestrator_pb";
import { CropStrip } from "../crops";
import { act, h, link, notice, render, seconds } from "../dom";

const ROW_SAMPLE = 3; // every 3rd crop in an identity row
const TRACK_SAMPLE = 1; // every crop in the track view
const ROW_PAGE = 8;
const TRACK_PAGE = 12;

type OpInit = MessageInitShape<typeof ReviewOpSchema>["op"];

export async function facesPage(epId: string, message?: string): Promise<void> {
  const { orchestrator, storage } = getApi();
  const [state, episode] = await Promise.all([orchestrator.getReview({ epId }), storage.getEpisode({ epId })]);
  const { people } = await storage.listPeople({ showId: episode.showId || "default" });
  const cast = h("datalist", { id: "cast" }, ...people.map((p) => h("option", { value: p.name })));
  const undo = h("button", { type: "button", disabled: !state.log.some((e) => e.op && !e.undone) }, "Undo last change");
  undo.addEventListener("click", () =>
    void act(undo, async () => {
      await orchestrator.undoReview({ epId, reviewer: "web" });
      await facesPage(epId, "Undid the last change.");
    }),
  );
  // Where "Add to facebank" reports (it changes no review state, so the page is not redrawn).
  const status = h("div", { id: "faces-status", role: "status", "aria-live": "polite" });
  const showId = episode.showId || "default";
  const rows = state.identities.map((identity) => identityRow(epId, identity, state, showId, status));
  render(
    h("h1", {}, `Faces: ${epId}`),
    h(
      "p",
      { class: "meta" },
      `${state.identities.length} identities · run ${state.runId} · `,
      link(`#/episodes/${epId}`, "Episode"),
      " · ",
      link(`#/episodes/${epId}/screen-time`, "Screen time"),
      " ",
      undo,
    ),
    message ? notice(message) : null,
    status,
    cast,
    ...rows.map((r) => r.element),
    looseTracks(epId, state),
  );
  await Promise.all(rows.map((r) => r.strip.load()));
}

async function review(epId: string, op: OpInit, done: string): Promise<void> {
  await getApi().orchestrator.review({ epId, op: { op, reviewer: "web" } as MessageInitShape<typeof ReviewOpSchema> });
  await facesPage(epId, done);
}

function title(identity: ReviewedIdentity): string {
  return identity.label ? `${identity.label}` : `Unknown ${identity.identityId}`;
}

/** Promotes a named identity's best faces into the show's facebank; the count and the refusals shown. */
function addToFacebankButton(epId: string, identity: ReviewedIdentity, showId: string, status: HTMLElement): HTMLElement {
  const button = h("button", { type: "button", class: "add-facebank" }, "Add to facebank");
  button.setAttribute("aria-describedby", `h-${identity.identityId}`);
  button.addEventListener("click", () =>
    void act(button, async () => {
      status.replaceChildren();
      const result = await getApi().orchestrator.addToFacebank({ epId, identityId: identity.identityId });
      const name = result.person?.name || identity.label;
      const total = result.person?.exemplars.length;
      status.replaceChildren(
        h(
          "div",
          { class: "notice", id: "facebank-result" },
          h(
            "p",
            {},
            `Added ${result.exemplarsAdded} face(s) of ${name} to the facebank of ${showId}`,
            total !== undefined ? ` (${total} exemplar(s) now). ` : ". ",
            link(`#/facebank/${encodeURIComponent(result.person?.showId || showId)}`, "Open the facebank"),
          ),
          rejectedFaces(result.rejected),
        ),
      );
    }),
  );
  return button;
}

/** The faces looked at and not added, with why; a long list folds away behind its count. */
function rejectedFaces(rejected: RejectedImage[]): HTMLElement | null {
  if (!rejected.length) return null;
  const list = h("ul", { class: "rejected", "aria-label": "Faces not added" }, ...rejected.map((r) => h("li", {}, h("strong", {}, r.name), `: ${r.reason}`)));
  if (rejected.length <= 3) return list;
  return h("details", { class: "rejected-faces" }, h("summary", {}, `${rejected.length} face(s) not added, and why`), list);
}

function identityRow(
  epId: string,
  identity: ReviewedIdentity,
  state: ReviewState,
  showId: string,
  status: HTMLElement,
): { element: HTMLElement; strip: CropStrip } {
  const id = identity.identityId;
  const strip = new CropStrip(epId, identity.trackIds, ROW_SAMPLE, ROW_PAGE, `Crops of ${title(identity)}`);

  const name = h("input", { type: "text", list: "cast", required: true, value: identity.label, "aria-label": `Name for ${id}` });
  const rename = h("button", { type: "submit" }, "Rename");
  const renameForm = h("form", { class: "inline-form" }, name, rename);
  renameForm.addEventListener("submit", (event) => {
    event.preventDefault();
    void act(rename, () => review(epId, { case: "rename", value: { identityId: id, name: name.value.trim() } }, `Renamed ${id} to ${name.value.trim()}.`));
  });

  const others = state.identities.filter((o) => o.identityId !== id);
  const target = h(
    "select",
    { "aria-label": `Merge ${id} into` },
    ...others.map((o) => h("option", { value: o.identityId }, `${title(o)}${o.label ? ` (${o.identityId})` : ""}`)),
  );
  const merge = h("button", { type: "submit", disabled: !others.length }, "Merge into");
  const mergeForm = h("form", { class: "inline-form" }, merge, target);
  mergeForm.addEventListener("submit", (event) => {
    event.preventDefault();
    void act(merge, () =>
      review(epId, { case: "merge", value: { sourceIdentityId: id, targetIdentityId: target.value } }, `Merged ${id} into ${target.value}.`),
    );
  });

  const tracks = h("div", { class: "tracks", hidden: true });
  const toggle = h("button", { type: "button", "aria-expanded": "false" }, `Tracks (${identity.trackIds.length})`);
  toggle.addEventListener("click", () =>
    void act(toggle, async () => {
      const open = tracks.hidden;
      tracks.hidden = !open;
      toggle.setAttribute("aria-expanded", String(open));
      if (open && !tracks.childElementCount) {
        const views = identity.trackIds.map((t) => trackView(epId, t, state, id));
        tracks.append(...views.map((v) => v.element));
        await Promise.all(views.map((v) => v.load()));
      }
    }),
  );

  const element = h(
    "section",
    { class: "identity", "data-identity": id, "aria-labelledby": `h-${id}` },
    h(
      "header",
      {},
      h("h2", { id: `h-${id}` }, title(identity)),
      h("span", { class: "meta" }, `${id} · ${seconds(identity.seconds)} · ${identity.trackIds.length} track(s)`, identity.labelSource ? ` · named by ${identity.labelSource}` : ""),
    ),
    strip.element,
    h("div", { class: "controls" }, renameForm, mergeForm, toggle, identity.label ? addToFacebankButton(epId, identity, showId, status) : null),
    tracks,
  );
  return { element, strip };
}

function trackView(epId: string, trackId: bigint, state: ReviewState, owner: string): { element: HTMLElement; load: () => Promise<void> } {
  const strip = new CropStrip(epId, [trackId], TRACK_SAMPLE, TRACK_PAGE, `Crops of track ${trackId}`);
  const actions = h("div", { class: "controls" });
  const target = h(
    "select",
    { "aria-label": `Move track ${trackId} to` },
    h("option", { value: "" }, "a new identity"),
    ...state.identities.filter((o) => o.identityId !== owner).map((o) => h("option", { value: o.identityId }, title(o))),
  );
  const move = h("button", { type: "submit" }, "Move to");
  const moveForm = h("form", { class: "inline-form" }, move, target);
  moveForm.addEventListener("submit", (event) => {
    event.preventDefault();
    void act(move, () =>
      review(epId, { case: "moveTrack", value: { trackId, targetIdentityId: target.value } }, `Moved track ${trackId} to ${target.value || "a new identity"}.`),
    );
  });
  actions.append(moveForm);
  if (owner) {
    const remove = h("button", { type: "button" }, "Remove from identity");
    remove.addEventListener("click", () =>
      void act(remove, () => review(epId, { case: "removeTrack", value: { trackId } }, `Removed track ${trackId} from ${owner}.`)),
    );
    actions.append(remove);
  }
  const del = h("button", { type: "button", class: "danger" }, "Delete track");
  del.addEventListener("click", () => void act(del, () => review(epId, { case: "deleteTrack", value: { trackId } }, `Deleted track ${trackId}.`)));
  actions.append(del);
  const element = h("div", { class: "track", "data-track": String(trackId) }, h("h3", {}, `Track ${trackId}`), strip.element, actions);
  const load = async (): Promise<void> => {
    await strip.load();
    if (!strip.shown) {
      element.querySelector(".strip")?.append(harvestButton(epId, trackId));
    }
  };
  return { element, load };
}

/** A track with no saved crops (a run with crops off, or interrupted): save them for the whole run. */
function harvestButton(epId: string, trackId: bigint): HTMLElement {
  const button = h("button", { type: "button", class: "harvest" }, "Harvest crops");
  const status = h("span", { role: "status" }, "No crops saved for this track. ");
  button.addEventListener("click", () =>
    void act(button, async () => {
      let last: Progress | undefined;
      for await (const progress of getApi().orchestrator.harvestCrops({ epId, idempotencyKey: crypto.randomUUID() })) {
        last = progress;
        status.textContent = `Harvesting: ${progress.framesDone}/${progress.framesTotal} frames… `;
      }
      if (!last?.summary || last.state !== JobState.SUCCEEDED) throw new Error(`harvest did not finish: ${last?.message || "no progress"}`);
      await facesPage(epId, `Harvested ${last.summary.cropsSaved} crop(s) for ${last.summary.tracksHarvested} track(s) (track ${trackId} asked).`);
    }),
  );
  return h("p", { class: "harvest-row" }, status, button);
}

function looseTracks(epId: string, state: ReviewState): HTMLElement | null {
  if (!state.unassignedTrackIds.length && !state.deletedTrackIds.length) return null;
  const views = state.unassignedTrackIds.map((t) => trackView(epId, t, state, ""));
  const section = h(
    "section",
    { class: "identity loose", "aria-labelledby": "h-loose" },
    h("header", {}, h("h2", { id: "h-loose" }, "Tracks in no identity")),
    h("p", { class: "meta" }, `${state.unassignedTrackIds.length} unassigned, ${state.deletedTrackIds.length} deleted (${state.deletedTrackIds.join(", ") || "none"})`),
    ...views.map((v) => v.element),
  );
  void Promise.all(views.map((v) => v.load()));
  return section;
}

