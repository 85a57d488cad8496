// Episode detail: run options, a live progress bar from the server stream, the completion banner.
import { Code, ConnectError } from "@connectrpc/connect";
import { getApi } from "../api";
import { JobState, type Progress, type RunChoices, Stage } from "../gen/faceflow/v1/orchestrator_pb";
import { act, field, h, link, render, seconds } from "../dom";
import { episodeLabel, showHref } from "./show";

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
      " · show ",
      link(showHref(episode.showId), episode.showId || "default"),
      episode.season ? ` · ${episodeLabel(episode)}` : "",
      " · current run ",
      currentRun,
    ),
    h("p", { class: "actions" }, link(`#/episodes/${epId}/faces`, "Review faces"), link(`#/episodes/${epId}/screen-time`, "Screen time")),
    runForm(epId, episode.showId, choices, status),
    status,
  );
  // A run already going (started elsewhere, or before a reload): follow it.
  const { jobs } = await orchestrator.listJobs({ epId });
  const live = jobs.find((job) => job.progress && [JobState.QUEUED, JobState.RUNNING].includes(job.progress.state));
  if (live) await follow(orchestrator.watchJob({ jobId: live.jobId }), status, live.jobId);
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
    field("Stride", stride, "every Nth frame only; empty: adaptive (the default)"),
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
      // One key for the submit and any resubmit: a second one joins the job the first may have created.
      const request = { epId, options, idempotencyKey: crypto.randomUUID() };
      const send = (): AsyncIterable<Progress> => getApi().orchestrator.runEpisode(request);
      await follow(send(), status, "", send);
    });
  });
  return form;
}

const TERMINAL: JobState[] = [JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED];
// Like the CLI (services/cli/jobs.py): 0.5 s doubling to 8 s, ±20 % jitter, for up to 10 minutes
// (a submit that cannot get through: 1 minute).
const RECONNECT = { firstMs: 500, maxMs: 8000, jitter: 0.2, giveUpMs: 10 * 60 * 1000, submitGiveUpMs: 60 * 1000 };

function backoffMs(attempt: number): number {
  const base = Math.min(RECONNECT.maxMs, RECONNECT.firstMs * 2 ** Math.min(attempt, 30));
  return base * (1 + RECONNECT.jitter * (2 * Math.random() - 1));
}

/** The stream broke rather than failed: Unavailable (from the services, or from Envoy while the
 * orchestrator is down), or the response cut off mid-stream (Envoy ends a gRPC-Web response without
 * trailers when the orchestrator dies under it, and fetch raises a TypeError: Unknown to Connect). */
export function broken(error: unknown): boolean {
  if (!(error instanceof ConnectError)) return error instanceof TypeError;
  if (error.code === Code.Unavailable) return true;
  return error.code === Code.Unknown && (error.cause instanceof TypeError || error.rawMessage === "missing trailer");
}

/** The messages of `stream`, and when it breaks (the orchestrator restarted, or the replica serving it
 * went away) or ends before the job did, those of watch(jobId) again, with backoff, while the job
 * lives: every Progress names its job. Before the first message (no job id yet) a broken stream is
 * sent again with resubmit(), if given. `waiting` tells the page when it is reconnecting. Stops when
 * `alive()` turns false (the page was left). */
export async function* reconnecting(
  stream: AsyncIterable<Progress>,
  jobId: string,
  watch: (jobId: string) => AsyncIterable<Progress>,
  waiting: (on: boolean) => void,
  alive: () => boolean,
  resubmit?: () => AsyncIterable<Progress>,
): AsyncGenerator<Progress> {
  let downSince: number | undefined;
  let attempt = 0;
  try {
    for (;;) {
      try {
        for await (const progress of stream) {
          if (downSince !== undefined) {
            downSince = undefined;
            attempt = 0;
            waiting(false);
          }
          jobId = progress.jobId || jobId;
          yield progress;
          if (TERMINAL.includes(progress.state)) return;
        }
      } catch (error) {
        if (error instanceof ConnectError && error.code === Code.NotFound && downSince !== undefined && jobId) {
          throw new Error(`job ${jobId} is gone: the orchestrator no longer knows it after reconnecting`);
        }
        if (!broken(error) || !(jobId || resubmit)) throw error;
        if (!jobId && downSince !== undefined && Date.now() - downSince >= RECONNECT.submitGiveUpMs) throw error;
      }
      if (!(jobId || resubmit) || !alive()) return;
      const now = Date.now();
      if (downSince === undefined) {
        downSince = now;
        waiting(true);
      } else if (jobId && now - downSince >= RECONNECT.giveUpMs) {
        throw new Error(`gave up following job ${jobId}: no answer for 10 minutes; it may still be running (reload the page later)`);
      }
      await new Promise((resolve) => setTimeout(resolve, backoffMs(attempt++)));
      if (!alive()) return;
      stream = jobId ? watch(jobId) : (resubmit as () => AsyncIterable<Progress>)();
    }
  } finally {
    if (downSince !== undefined) waiting(false);
  }
}

/** Renders every Progress message as it arrives (across orchestrator restarts); the last one decides
 * the banner. */
async function follow(
  stream: AsyncIterable<Progress>,
  status: HTMLElement,
  jobId = "",
  resubmit?: () => AsyncIterable<Progress>,
): Promise<void> {
  const bar = h("progress", { max: 1, value: 0, id: "run-progress", "aria-label": "Run progress" });
  const text = h("p", { class: "progress-text" });
  const waiting = h("p", { class: "reconnecting", id: "run-reconnecting", role: "status", hidden: true }, "reconnecting…");
  status.replaceChildren(bar, text, waiting);
  const showWaiting = (on: boolean): void => {
    waiting.hidden = !on;
  };
  let last: Progress | undefined;
  const watch = (id: string): AsyncIterable<Progress> => getApi().orchestrator.watchJob({ jobId: id });
  for await (const progress of reconnecting(stream, jobId, watch, showWaiting, () => bar.isConnected, resubmit)) {
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
