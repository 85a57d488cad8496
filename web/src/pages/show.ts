// Show: screen time per person and episode across a show (or one season of it), with the reviewers'
// cross-episode decisions on unknown people: not the same person, the same person, a name for all.
import { getApi } from "../api";
import type { IdentityRef, LinkedIdentity, ShowEpisode, ShowPersonRow, ShowScreenTime } from "../gen/faceflow/v1/orchestrator_pb";
import type { Episode } from "../gen/faceflow/v1/storage_pb";
import { act, field, h, link, notice, render, seconds } from "../dom";
import { navigate } from "../router";

// One colour per episode (the chart's segments and its legend); beyond ten, hues a golden angle apart.
const PALETTE = ["#1f5fbf", "#e07b00", "#2a9d5c", "#c0392b", "#7b4fbf", "#8c564b", "#d6589f", "#5f6b7a", "#a69000", "#17a2b8"];

export function episodeColour(index: number): string {
  return PALETTE[index] ?? `hsl(${Math.round((index * 137.508) % 360)} 55% 45%)`;
}

/** "S1E3" when the episode has a season and a number, else its id. */
export function episodeLabel(episode: { epId: string; season: number; episodeNumber: number }): string {
  if (episode.season && episode.episodeNumber) return `S${episode.season}E${episode.episodeNumber}`;
  if (episode.season) return `S${episode.season} ${episode.epId}`;
  return episode.epId;
}

export function showHref(showId: string, season = 0): string {
  const base = `#/shows/${encodeURIComponent(showId || "default")}`;
  return season ? `${base}/season/${season}` : base;
}

function refKey(ref: IdentityRef | undefined): string {
  return ref ? `${ref.epId}/${ref.identityId}` : "";
}

/** #/shows: every show that has episodes, with its episode and season counts. */
export async function showsPage(): Promise<void> {
  const { episodes } = await getApi().storage.listEpisodes({});
  const shows = new Map<string, Episode[]>();
  for (const ep of episodes) {
    const show = ep.showId || "default";
    shows.set(show, [...(shows.get(show) ?? []), ep]);
  }
  const rows = [...shows.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([show, eps]) => {
      const seasons = [...new Set(eps.map((e) => e.season).filter(Boolean))].sort((a, b) => a - b);
      return h(
        "tr",
        { "data-show": show },
        h("th", { scope: "row" }, link(showHref(show), show)),
        h("td", { class: "num" }, String(eps.length)),
        h("td", {}, seasons.length ? seasons.map((s) => `season ${s}`).join(", ") : "—"),
        h("td", { class: "actions" }, link(`#/facebank/${encodeURIComponent(show)}`, "Facebank")),
      );
    });
  render(
    h("h1", {}, "Shows"),
    h("p", { class: "meta" }, "Set an episode's show, season and number on the ", link("#/", "Episodes"), " page."),
    rows.length
      ? h(
          "table",
          { class: "shows" },
          h("caption", { class: "sr-only" }, "Shows with episodes"),
          h("thead", {}, h("tr", {}, ...["Show", "Episodes", "Seasons", "Actions"].map((c) => h("th", { scope: "col" }, c)))),
          h("tbody", {}, ...rows),
        )
      : h("p", { class: "empty" }, "No episodes yet: upload a video on the Episodes page."),
  );
}

/** #/shows/SHOW[/season/N]: the person × episode table, a chart, and the unknown people's links. */
export async function showPage(showId: string, seasonParam?: string): Promise<void> {
  const season = seasonParam ? Number(seasonParam) : 0;
  if (!Number.isInteger(season) || season < 0) throw new Error(`not a season number: ${seasonParam}`);
  const { orchestrator, storage } = getApi();
  const [state, listed, cast] = await Promise.all([
    orchestrator.getShowScreenTime({ showId, season }),
    storage.listEpisodes({ showId }),
    storage.listPeople({ showId }),
  ]);
  const seasons = [...new Set(listed.episodes.filter((e) => (e.showId || "default") === state.showId).map((e) => e.season))].sort((a, b) => a - b);
  const context: Context = { showId: state.showId, season, seasons, cast: cast.people.map((p) => p.name) };
  renderShow(context, state);
}

interface Context {
  showId: string;
  season: number;
  seasons: number[]; // every season value among the show's episodes (0: not set)
  cast: string[]; // the show's facebank names, suggested when naming
}

function renderShow(context: Context, state: ShowScreenTime, message?: string): void {
  const counted = state.episodes.filter((e) => e.runId).length;
  const unknown = state.people.filter((p) => !p.label);
  render(
    h("h1", {}, context.season ? `Show: ${context.showId} · season ${context.season}` : `Show: ${context.showId}`),
    h(
      "p",
      { class: "meta" },
      `${state.episodes.length} episode(s), ${counted} with a run · ${seconds(state.totalDurationS)} of video · `,
      link(`#/facebank/${encodeURIComponent(context.showId)}`, "Facebank"),
      " · ",
      link("#/shows", "All shows"),
    ),
    seasonPicker(context),
    message ? notice(message) : null,
    state.unlinkedEpisodes.length
      ? h(
          "p",
          { class: "note" },
          `Embedded by another model, not linked across episodes: ${state.unlinkedEpisodes.join(", ")}. Run them again to link their unknown people.`,
        )
      : null,
    h("datalist", { id: "show-cast" }, ...context.cast.map((name) => h("option", { value: name }))),
    h("h2", {}, "Screen time per episode"),
    state.people.length ? personTable(state) : h("p", { class: "empty" }, "Nobody on screen yet: run the episodes first."),
    state.people.length ? h("h2", {}, "Chart") : null,
    state.people.length ? chart(state) : null,
    h("h2", {}, "Unknown people"),
    h(
      "p",
      { class: "meta" },
      "Unnamed identities are linked across episodes by their faces. Split a wrong link, join the same person, or name them all at once.",
    ),
    unknown.length
      ? h("div", { class: "show-people" }, ...unknown.map((row) => unknownCard(context, state, row)))
      : h("p", { class: "empty" }, "Everybody on screen is named."),
  );
}

function seasonPicker(context: Context): HTMLElement | null {
  if (context.seasons.length < 2 && !context.season) return null;
  const select = h(
    "select",
    { id: "show-season" },
    h("option", { value: "0", selected: context.season === 0 }, "All seasons"),
    ...context.seasons
      .filter(Boolean)
      .map((s) => h("option", { value: String(s), selected: context.season === s }, `Season ${s}`)),
  );
  const form = h("form", { class: "inline-form season-picker" }, field("Season", select), h("button", { type: "submit" }, "Show season"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    navigate(showHref(context.showId, Number(select.value)));
  });
  return form;
}

function episodeHeader(episode: ShowEpisode): HTMLElement {
  const label = episodeLabel(episode);
  return h(
    "th",
    { scope: "col", class: "num ep", "data-ep": episode.epId, title: `${episode.epId}: ${seconds(episode.durationS)}` },
    h("span", { class: "col-label" }, label),
    label !== episode.epId ? h("small", {}, episode.epId) : null,
    !episode.runId ? h("small", {}, "not run") : episode.reviewed ? null : h("small", {}, "not reviewed"),
  );
}

function personTable(state: ShowScreenTime): HTMLElement {
  const counted = state.episodes.filter((e) => e.runId).length;
  const head = h(
    "tr",
    {},
    h("th", { scope: "col" }, h("span", { class: "col-label" }, "Person")),
    ...state.episodes.map(episodeHeader),
    ...["Total", "Share", "Episodes"].map((c) => h("th", { scope: "col", class: "num" }, h("span", { class: "col-label" }, c))),
  );
  const rows = state.people.map((person) =>
    h(
      "tr",
      { "data-row": person.rowId, class: person.label ? "named" : "unknown" },
      h("th", { scope: "row" }, person.displayName),
      ...state.episodes.map((episode, i) => {
        const value = person.seconds[i] ?? 0;
        const cell = h("td", { class: "num", "data-ep": episode.epId });
        if (value > 0) {
          const a = link(`#/episodes/${encodeURIComponent(episode.epId)}/screen-time`, value.toFixed(1));
          a.setAttribute("aria-label", `${person.displayName} in ${episodeLabel(episode)}: ${value.toFixed(1)} seconds`);
          cell.append(a);
        } else {
          cell.append(h("span", { "aria-label": "not on screen" }, "—"));
        }
        return cell;
      }),
      h("td", { class: "num total" }, seconds(person.totalS)),
      h("td", { class: "num share" }, `${(100 * person.share).toFixed(1)} %`),
      h("td", { class: "num appeared" }, `${person.episodesAppeared} of ${counted}`),
    ),
  );
  return h(
    "div",
    { class: "table-scroll" },
    h(
      "table",
      { class: "show-table" },
      h("caption", { class: "sr-only" }, "Seconds on screen per person and episode; each figure opens that episode's screen time"),
      h("thead", {}, head),
      h("tbody", {}, ...rows),
    ),
  );
}

/** A horizontal stacked bar per person, one segment per episode, scaled to the longest total. */
function chart(state: ShowScreenTime): HTMLElement {
  const longest = Math.max(...state.people.map((p) => p.totalS), 1e-9);
  const legend = h(
    "ul",
    { class: "legend", "aria-label": "Episodes" },
    ...state.episodes.map((episode, i) => {
      const swatch = h("span", { class: "swatch", "aria-hidden": "true" });
      swatch.style.backgroundColor = episodeColour(i); // through the CSSOM: the CSP allows no inline styles
      return h("li", { "data-ep": episode.epId }, swatch, episodeLabel(episode));
    }),
  );
  const bars = state.people.map((person) => {
    const parts: string[] = [];
    const segments = state.episodes.flatMap((episode, i) => {
      const value = person.seconds[i] ?? 0;
      if (value <= 0) return [];
      parts.push(`${episodeLabel(episode)} ${value.toFixed(1)} s`);
      const segment = h("span", { class: "seg", "data-ep": episode.epId, title: `${episodeLabel(episode)}: ${value.toFixed(1)} s` });
      segment.style.width = `${(100 * value) / longest}%`;
      segment.style.backgroundColor = episodeColour(i);
      return [segment];
    });
    const summary = `${person.displayName}: ${seconds(person.totalS)} in all${parts.length ? ` (${parts.join(", ")})` : ""}`;
    return h(
      "li",
      { "data-row": person.rowId },
      h("span", { class: "bar-label" }, person.displayName),
      h("div", { class: "bar", role: "img", "aria-label": summary }, ...segments),
      h("span", { class: "bar-total" }, seconds(person.totalS)),
    );
  });
  return h("figure", { class: "show-chart" }, legend, h("ul", { class: "bars" }, ...bars), h("figcaption", { class: "meta" }, "Seconds on screen, one colour per episode; the longest bar is the person seen longest."));
}

function linkState(identity: LinkedIdentity): string {
  switch (identity.link) {
    case "named":
      return "named";
    case "confirmed":
      return "linked by a reviewer";
    case "auto":
      return `linked automatically, similarity ${identity.similarity.toFixed(2)}`;
    case "single":
      return "not linked";
    default:
      return identity.link || "not linked";
  }
}

function unknownCard(context: Context, state: ShowScreenTime, row: ShowPersonRow): HTMLElement {
  const slug = row.rowId.replace(/[^a-zA-Z0-9_-]+/g, "-");
  const headingId = `row-${slug}`;
  const episodes = new Map(state.episodes.map((e) => [e.epId, e]));
  const identities = row.identities.map((identity, i) => {
    const ref = identity.identity;
    const episode = ref ? episodes.get(ref.epId) : undefined;
    const describeId = `${headingId}-id${i}`;
    const item = h(
      "li",
      { "data-identity": refKey(ref), "data-link": identity.link },
      h(
        "span",
        { id: describeId },
        h("strong", {}, episode ? episodeLabel(episode) : ref?.epId ?? "?"),
        " ",
        ref ? link(`#/episodes/${encodeURIComponent(ref.epId)}/faces`, `${ref.epId} / ${ref.identityId}`) : "",
        ` · ${seconds(identity.seconds)} · `,
        h("span", { class: "link-state" }, linkState(identity)),
      ),
    );
    if (row.identities.length > 1 && ref) {
      const split = h("button", { type: "button", "aria-describedby": describeId }, "Not the same person");
      split.addEventListener("click", () =>
        void act(split, async () => {
          const next = await getApi().orchestrator.unlinkIdentity({ showId: context.showId, season: context.season, identity: ref });
          renderShow(context, next, `${ref.epId} / ${ref.identityId} is no longer linked to ${row.displayName}.`);
        }),
      );
      item.append(" ", split);
    }
    return item;
  });

  const suggestions = row.suggestions.map((suggestion, i) => {
    const describeId = `${headingId}-sg${i}`;
    const other = state.people.find((p) => p.rowId === suggestion.rowId);
    const same = h("button", { type: "button", "aria-describedby": describeId }, "Same person");
    same.addEventListener("click", () =>
      void act(same, async () => {
        if (!other) throw new Error(`${suggestion.displayName} is no longer listed; reload the page`);
        const { orchestrator } = getApi();
        const where = { showId: context.showId, season: context.season };
        if (other.label) {
          // A named person is one row by name: the same person means the same name for every identity.
          const ref = row.identities[0]?.identity;
          const next = await orchestrator.nameShowPerson({ ...where, identity: ref, name: other.label });
          renderShow(context, next, `Named ${row.displayName} ${other.label} (${count(row.identities.length)}).`);
        } else {
          const next = await orchestrator.linkIdentities({ ...where, identities: pickPair(row, other) });
          renderShow(context, next, `Linked ${row.displayName} and ${suggestion.displayName} as one person.`);
        }
      }),
    );
    return h(
      "li",
      { "data-suggestion": suggestion.rowId },
      h(
        "span",
        { id: describeId },
        other?.label ? `${suggestion.displayName} (named) · ` : `${suggestion.displayName} · `,
        `similarity ${suggestion.similarity.toFixed(2)}`,
      ),
      " ",
      same,
    );
  });

  const nameInput = h("input", { type: "text", required: true, maxlength: 128, list: "show-cast", autocomplete: "off" });
  const save = h("button", { type: "submit" }, "Save name");
  const cancel = h("button", { type: "button" }, "Cancel");
  const nameForm = h("form", { class: "inline-form", hidden: true }, field(`Name for ${row.displayName}`, nameInput), save, cancel);
  const opener = h("button", { type: "button", "aria-expanded": "false", "aria-controls": `${headingId}-name` }, "Name…");
  nameForm.id = `${headingId}-name`;
  const close = (): void => {
    nameForm.hidden = true;
    opener.setAttribute("aria-expanded", "false");
    opener.focus();
  };
  opener.addEventListener("click", () => {
    nameForm.hidden = !nameForm.hidden;
    opener.setAttribute("aria-expanded", String(!nameForm.hidden));
    if (!nameForm.hidden) nameInput.focus();
  });
  cancel.addEventListener("click", close);
  nameForm.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation();
      close();
    }
  });
  nameForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const name = nameInput.value.trim();
    const ref = row.identities[0]?.identity;
    if (!name || !ref) return;
    void act(save, async () => {
      const next = await getApi().orchestrator.nameShowPerson({ showId: context.showId, season: context.season, identity: ref, name });
      renderShow(context, next, `Named ${row.displayName} ${name} (${count(row.identities.length)}).`);
    });
  });

  return h(
    "section",
    { class: "show-person", "data-row": row.rowId, "aria-labelledby": headingId },
    h(
      "header",
      {},
      h("h3", { id: headingId }, row.displayName),
      h("span", { class: "meta" }, `${seconds(row.totalS)} · ${row.episodesAppeared} episode(s)`),
    ),
    h("ul", { class: "linked", "aria-label": `Identities of ${row.displayName}` }, ...identities),
    suggestions.length
      ? h("div", { class: "suggestions" }, h("h4", {}, "May be the same person as"), h("ul", {}, ...suggestions))
      : null,
    h("div", { class: "controls" }, opener, nameForm),
  );
}

function count(identities: number): string {
  return `${identities} identit${identities === 1 ? "y" : "ies"}`;
}

/** One identity of each row, of different episodes when the rows allow it (the server refuses two of
 * one episode, and its sentence is shown). */
function pickPair(a: ShowPersonRow, b: ShowPersonRow): IdentityRef[] {
  for (const x of a.identities) {
    for (const y of b.identities) {
      if (x.identity && y.identity && x.identity.epId !== y.identity.epId) return [x.identity, y.identity];
    }
  }
  return [a.identities[0]?.identity, b.identities[0]?.identity].filter((r): r is IdentityRef => Boolean(r));
}
