// Screen time: per person and per identity, a table and a timeline of on-screen intervals.
import { getApi } from "../api";
import type { ScreenTimeRow } from "../gen/faceflow/v1/orchestrator_pb";
import { h, link, render, seconds } from "../dom";

export async function screenTimePage(epId: string): Promise<void> {
  const st = await getApi().orchestrator.getScreenTime({ epId });
  const duration = st.durationS || 1;
  const unnamed = st.identities.filter((row) => !row.label);
  render(
    h("h1", {}, `Screen time: ${epId}`),
    h("p", { class: "meta" }, `run ${st.runId} · episode ${seconds(st.durationS)} · `, link(`#/episodes/${epId}/faces`, "Review faces")),
    h("h2", {}, "People"),
    st.people.length ? table("people", st.people, duration) : h("p", { class: "empty" }, "Nobody is named yet: name identities in the faces review."),
    h("h2", {}, "Unnamed identities"),
    unnamed.length ? table("identities", unnamed, duration) : h("p", { class: "empty" }, "Every identity is named."),
  );
}

function table(kind: string, rows: ScreenTimeRow[], duration: number): HTMLElement {
  return h(
    "table",
    { class: `screentime ${kind}` },
    h("thead", {}, h("tr", {}, ...["Name", "Seconds", "Share", "Timeline"].map((c) => h("th", { scope: "col" }, c)))),
    h(
      "tbody",
      {},
      ...rows.map((row) =>
        h(
          "tr",
          {},
          h("th", { scope: "row" }, row.label || row.identityId),
          h("td", { class: "num" }, row.seconds.toFixed(1)),
          h("td", { class: "num" }, `${((100 * row.seconds) / duration).toFixed(0)} %`),
          h("td", { class: "timeline-cell" }, timeline(row, duration)),
        ),
      ),
    ),
  );
}

function timeline(row: ScreenTimeRow, duration: number): HTMLElement {
  const spans = row.intervals.map((i) => {
    const span = h("span", { class: "segment", title: `${i.startS.toFixed(1)}–${i.endS.toFixed(1)} s` });
    // Through the CSSOM, not a style attribute: the page's CSP allows no inline styles.
    span.style.left = `${(100 * i.startS) / duration}%`;
    span.style.width = `${Math.max((100 * (i.endS - i.startS)) / duration, 0.3)}%`;
    return span;
  });
  const who = row.label || row.identityId;
  return h("div", { class: "timeline", role: "img", "aria-label": `${who}: ${row.intervals.length} appearance(s)` }, ...spans);
}
