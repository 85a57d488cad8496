// Episode detail: run options, a live progress bar from the server stream, the completion banner.
import { getApi } from "../api";
import { JobState, type Progress, type RunChoices, Stage } from "../gen/faceflow/v1/orchestrator_pb";
import { act, field, h, link, render, seconds } from "../dom";

const STAGES: Record<number, string> = {
  [Stage.VALIDATE]: "validating",
  [Stage.DETECT_TRACK]: "detecting and tracking",
  [Stage.EMBED]: "embedding",
  [Stage.CLUSTER]: "clustering",
  [Stage.LABEL]: "labelling",
  [Stage.SCREEN_TIME]: "screen time",
  [Stage.WRITE]: "writing",
  [Stage.DONE]: "done",
};

export async function episodePage(epId: string): Promise<void> {
  const { orchestrator, storage } = getApi();
  const [episode, choices] = await Promise.all([storage.getEpisode({ epId }), orchestrator.getRunChoices({})]);
  const video = episode.video;
  const status = h("div", { class: "run-status", "aria-live": "polite" });
  const currentRun = h("span", { id: "current-run" }, episode.currentRunId || "none");
  render(
    h("h1", {}, `Episode ${epId}`),
    h(
      "p",
      { class: "meta" },
      video ? `${video.width}×${video.height}, ${video.fps.toFixed(2)} fps, ${video.frameCount} frames, ${seconds(video.durationS)}` : "",
      ` · show ${episode.showId || "default"} · current run `,
      currentRun,
    ),
    h("p", { class: "actions" }, link(`#/episodes/${epId}/faces`, "Review faces"), link(`#/episodes/${epId}/screen-time`, "Screen time")),
    runForm(epId, episode.showId, choices, status),
    status,
  );
  // A run already going (started elsewhere, or before a reload): follow it.
  const { jobs } = await orchestrator.listJobs({ epId });
  const live = jobs.find((job) => job.progress && [JobState.QUEUED, JobState.RUNNING].includes(job.progress.state));
  if (live) await follow(orchestrator.watchJob({ jobId: live.jobId }), status);
}

function select(id: string, options: string[], chosen: string): HTMLSelectElement {
  return h("select", { id }, ...options.map((o) => h("option", { value: o, selected: o === chosen }, o)));
}

function runForm(epId: string, showId: string, choices: RunChoices, status: HTMLElement): HTMLElement {
  const detector = select("run-detector", choices.detectors, choices.defaultDetector);
  const tracker = select("run-tracker", choices.trackers, choices.defaultTracker);
  const stride = h("input", { type: "number", min: 1, max: choices.maxStride, placeholder: "auto", id: "run-stride" });
  const crops = h("input", { type: "checkbox", checked: true, id: "run-crops" });
  const submit = h("button", { type: "submit" }, "Start run");
  const form = h(
    "form",
    { class: "card inline", "aria-labelledby": "run-title" },
    h("h2", { id: "run-title" }, "Run"),
    field("Detector", detector),
    field("Tracker", tracker),
    field("Stride", stride, "every Nth frame; empty: ~5 per second"),
    h("div", { class: "check" }, crops, h("label", { for: "run-crops" }, "Save face crops")),
    h("div", { class: "buttons" }, submit),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    void act(submit, async () => {
      const options = {
        detector: detector.value,
        tracker: tracker.value,
        stride: Number(stride.value),
        showId,
        skipCrops: !crops.checked,
      };
      const stream = getApi().orchestrator.runEpisode({ epId, options, idempotencyKey: crypto.randomUUID() });
      await follow(stream, status);
    });
  });
  return form;
}

/** Renders every Progress message as it arrives; the last one decides the banner. */
async function follow(stream: AsyncIterable<Progress>, status: HTMLElement): Promise<void> {
  const bar = h("progress", { max: 1, value: 0, id: "run-progress", "aria-label": "Run progress" });
  const text = h("p", { class: "progress-text" });
  status.replaceChildren(bar, text);
  let last: Progress | undefined;
  for await (const progress of stream) {
    last = progress;
    const total = Number(progress.framesTotal);
    const done = Number(progress.framesDone);
    bar.max = Math.max(total, 1);
    bar.value = progress.state === JobState.SUCCEEDED ? bar.max : done;
    bar.dataset.stage = STAGES[progress.stage] ?? "queued";
    const parts = [STAGES[progress.stage] ?? "queued", `${done}/${total} frames`];
    if (progress.fps > 0) parts.push(`${progress.fps.toFixed(1)} fps`);
    if (progress.etaS > 0 && progress.state === JobState.RUNNING) parts.push(`eta ${seconds(progress.etaS)}`);
    text.textContent = parts.join(" · ");
  }
  if (!last) return;
  status.append(banner(last));
  const runId = last.state === JobState.SUCCEEDED ? last.summary?.runId : undefined;
  const current = document.getElementById("current-run");
  if (runId && current) current.textContent = runId;
}

function banner(progress: Progress): HTMLElement {
  if (progress.state !== JobState.SUCCEEDED) {
    const state = JobState[progress.state].toLowerCase();
    return h("div", { class: "banner failed", role: "alert" }, `Run ${state}: ${progress.message || "no reason given"}`);
  }
  const s = progress.summary;
  const counts = s
    ? `${s.framesProcessed} frames, ${s.faces} faces, ${s.tracks} tracks, ${s.identities} identities in ${seconds(s.wallTimeS)}`
    : "";
  return h(
    "div",
    { class: "banner done", id: "run-done" },
    h("strong", {}, "Run done"),
    ` (${s?.runId ?? ""}): ${progress.detector} + ${progress.tracker}, ${counts}. `,
    link(`#/episodes/${progress.epId}/faces`, "Review faces"),
  );
}
