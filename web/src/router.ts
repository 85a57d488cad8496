// Hash routes: #/ episodes, #/episodes/EP, #/episodes/EP/faces, #/episodes/EP/screen-time, #/facebank[/SHOW],
// #/shows, #/shows/SHOW[/season/N].
type Page = (...params: string[]) => Promise<void>;

const routes: Array<[RegExp, Page]> = [];

export function route(pattern: RegExp, page: Page): void {
  routes.push([pattern, page]);
}

export function navigate(hash: string): void {
  if (location.hash === hash) void dispatch();
  else location.hash = hash;
}

export async function dispatch(): Promise<void> {
  const path = decodeURIComponent(location.hash.replace(/^#/, "") || "/");
  for (const [pattern, page] of routes) {
    const match = pattern.exec(path);
    if (match) return page(...match.slice(1));
  }
  throw new Error(`no page at ${path}`);
}
