// Facebank: the cast of a show, and enrolment of a person from seed images (rejections with reasons).
import { getApi } from "../api";
import type { EnrollPersonResponse } from "../gen/faceflow/v1/orchestrator_pb";
import type { Person } from "../gen/faceflow/v1/storage_pb";
import { act, field, h, render } from "../dom";
import { navigate } from "../router";

export async function facebankPage(showId = "default", result?: EnrollPersonResponse): Promise<void> {
  const { people } = await getApi().storage.listPeople({ showId });
  const show = h("input", { type: "text", value: showId, id: "facebank-show" });
  const pick = h("form", { class: "inline-form" }, field("Show", show), h("button", { type: "submit" }, "Show cast"));
  pick.addEventListener("submit", (event) => {
    event.preventDefault();
    navigate(`#/facebank/${encodeURIComponent(show.value.trim() || "default")}`);
  });
  render(
    h("h1", {}, `Facebank: ${showId}`),
    pick,
    result ? enrolResult(result) : null,
    people.length ? h("ul", { class: "cast" }, ...people.map(personCard)) : h("p", { class: "empty" }, "Nobody enrolled in this show yet."),
    enrolForm(showId),
  );
}

function personCard(person: Person): HTMLElement {
  const crops = person.exemplars.map((e) =>
    h("img", { src: URL.createObjectURL(new Blob([e.cropJpeg as BlobPart], { type: "image/jpeg" })), alt: `${person.name}: ${e.sourceName}`, title: `${e.sourceName}, quality ${e.quality.toFixed(2)}`, width: 56, height: 56 }),
  );
  return h(
    "li",
    { class: "person", "data-person": person.personId },
    h("h2", {}, person.name),
    h("p", { class: "meta" }, `${person.personId} · ${person.exemplars.length} exemplar(s)`),
    h("div", { class: "exemplars" }, ...crops),
  );
}

function enrolResult(result: EnrollPersonResponse): HTMLElement {
  const person = result.person;
  return h(
    "div",
    { class: "notice", role: "status", id: "enrol-result" },
    h("p", {}, `Enrolled ${person?.name ?? "?"} with ${person?.exemplars.length ?? 0} exemplar(s).`),
    result.rejected.length
      ? h("ul", { class: "rejected", "aria-label": "Rejected images" }, ...result.rejected.map((r) => h("li", {}, h("strong", {}, r.name), `: ${r.reason}`)))
      : null,
  );
}

function enrolForm(showId: string): HTMLElement {
  const name = h("input", { type: "text", required: true, id: "enrol-name" });
  const images = h("input", { type: "file", accept: "image/*", multiple: true, required: true, id: "enrol-images" });
  const append = h("input", { type: "checkbox", id: "enrol-append" });
  const submit = h("button", { type: "submit" }, "Enrol");
  const form = h(
    "form",
    { class: "card", "aria-labelledby": "enrol-title" },
    h("h2", { id: "enrol-title" }, "Add a person"),
    field("Name", name),
    field("Seed images", images, "one face per image; several angles help"),
    h("div", { class: "check" }, append, h("label", { for: "enrol-append" }, "Add to an existing person of this name")),
    h("div", { class: "buttons" }, submit),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    void act(submit, async () => {
      const files = Array.from(images.files ?? []);
      const seeds = await Promise.all(files.map(async (f) => ({ name: f.name, data: new Uint8Array(await f.arrayBuffer()) })));
      const result = await getApi().orchestrator.enrollPerson({ showId, name: name.value.trim(), images: seeds, append: append.checked });
      await facebankPage(showId, result);
    });
  });
  return form;
}
