// A few DOM helpers: build elements, report errors in the page, run an action with a busy state.
import { Code, ConnectError } from "@connectrpc/connect";
import { describeError } from "./api";
import { isUnauthenticated } from "./auth";

type Child = Node | string | null | undefined | false;
type Attrs = Record<string, string | number | boolean | EventListener | undefined>;

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") element.addEventListener(name.slice(2), value);
    else if (name === "class") element.className = String(value);
    else if (name in element && typeof value !== "string") (element as unknown as Record<string, unknown>)[name] = value;
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) if (child) element.append(child);
  return element;
}

export function main(): HTMLElement {
  return document.getElementById("main") as HTMLElement;
}

/** Replaces the page's content; focus goes to the new heading for keyboard and screen-reader users. */
export function render(...children: Child[]): void {
  const root = main();
  root.replaceChildren(...children.filter((c): c is Node | string => Boolean(c)));
  const heading = root.querySelector("h1");
  if (heading) {
    heading.tabIndex = -1;
    heading.focus();
  }
}

/** The service's sentence in the page's banner (or in `box`, e.g. inside a dialog). A refused token
 * shows nothing here: the sign-in panel has taken over and says why. */
export function showError(error: unknown, box: HTMLElement = errorBanner()): void {
  if (isUnauthenticated(error)) return;
  const denied = error instanceof ConnectError && error.code === Code.PermissionDenied;
  const close = h("button", { type: "button", class: "link", onclick: () => hideError(box) }, "Dismiss");
  box.replaceChildren(h("strong", {}, denied ? "Not allowed: " : "Error: "), describeError(error), " ", close);
  box.classList.toggle("denied", denied);
  box.hidden = false;
}

export function hideError(box: HTMLElement = errorBanner()): void {
  box.hidden = true;
}

function errorBanner(): HTMLElement {
  return document.getElementById("error") as HTMLElement;
}

/** A short confirmation of what a call did, announced politely. */
export function notice(text: string): HTMLElement {
  return h("p", { class: "notice", role: "status" }, text);
}

/** Runs an action with its button disabled; an error goes to the page's error banner, or to `box`. */
export async function act(button: HTMLButtonElement | null, action: () => Promise<void>, box?: HTMLElement): Promise<void> {
  hideError(box);
  if (button) button.disabled = true;
  try {
    await action();
  } catch (error) {
    showError(error, box);
  } finally {
    if (button) button.disabled = false;
  }
}

export function seconds(value: number): string {
  if (value < 60) return `${value.toFixed(1)} s`;
  const m = Math.floor(value / 60);
  return `${m} min ${(value - m * 60).toFixed(0)} s`;
}

export function link(href: string, text: string): HTMLAnchorElement {
  return h("a", { href }, text);
}

export function field(label: string, control: HTMLElement, hint?: string): HTMLElement {
  const id = control.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  control.id = id;
  return h("div", { class: "field" }, h("label", { for: id }, label), control, hint ? h("small", {}, hint) : null);
}
