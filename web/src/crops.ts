// A strip of 4:5 face crops for one or more tracks, paged with ListTrackCrops' cursor.
import { getApi } from "./api";
import { act, h } from "./dom";

export class CropStrip {
  readonly element: HTMLElement;
  private readonly list: HTMLElement;
  private readonly more: HTMLButtonElement;
  private trackIndex = 0;
  private cursor = "";
  shown = 0;

  constructor(
    private readonly epId: string,
    private readonly trackIds: bigint[],
    private readonly sample: number,
    private readonly pageSize: number,
    label: string,
  ) {
    this.list = h("ul", { class: "crops", "aria-label": label });
    this.more = h("button", { type: "button", class: "more", hidden: true }, "Load more");
    this.more.addEventListener("click", () => void act(this.more, () => this.load()));
    this.element = h("div", { class: "strip" }, this.list, this.more);
  }

  /** The next page: fills up to pageSize crops, moving on to the next track when one runs out. */
  async load(): Promise<void> {
    const { storage } = getApi();
    let added = 0;
    while (added < this.pageSize && this.trackIndex < this.trackIds.length) {
      const trackId = this.trackIds[this.trackIndex];
      const page = await storage.listTrackCrops({
        epId: this.epId,
        trackId,
        sample: this.sample,
        limit: this.pageSize - added,
        startAfter: this.cursor,
      });
      for (const crop of page.items) {
        const alt = `track ${trackId}, frame ${crop.frameIdx} (${crop.ts.toFixed(1)} s)`;
        this.list.append(h("li", {}, h("img", { src: crop.url, alt, title: alt, loading: "lazy", width: 80, height: 100 })));
      }
      added += page.items.length;
      if (page.nextStartAfter) {
        this.cursor = page.nextStartAfter;
      } else {
        this.trackIndex += 1;
        this.cursor = "";
      }
    }
    this.shown += added;
    this.more.hidden = this.trackIndex >= this.trackIds.length;
  }
}
