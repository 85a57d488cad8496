// Drives the review UI in headless Chromium (Debian's, through npm playwright-core) against the real
// stack behind the real Envoy. Input: one JSON argument (see tests/web/test_review_ui.py). Output: one
// JSON line with what the page showed; any failed step throws, and a screenshot of the page is kept.
import { createRequire } from "node:module";
import { writeFileSync } from "node:fs";
import path from "node:path";

const config = JSON.parse(process.argv[2]);
const require = createRequire(path.join(config.webDir, "package.json"));
const { chromium } = require("playwright-core");

const LONG = 180_000; // a run of the sample episode on a loaded 2-core machine
const result = { steps: [], progress: [], consoleErrors: [], expectedConsoleErrors: [] };
// While a step expects calls to be refused (a bad token, a reviewer deleting), the browser's own log
// line for a refused HTTP request is expected too; nothing else is, ever.
let refusalsExpected = false;
const REFUSED_CALL = /^Failed to load resource: the server responded with a status of (401|403)\b/;

function check(condition, message) {
  if (!condition) throw new Error(message);
}

async function shot(page, name) {
  const file = path.join(config.outDir, `${name}.png`);
  await page.screenshot({ path: file, fullPage: false });
  result.steps.push(name);
}

async function cropsLoaded(page) {
  await page.waitForFunction(() => {
    const images = [...document.querySelectorAll(".crops img")];
    const settled = !document.body.dataset.loading;
    return settled && images.length > 0 && images.every((img) => img.complete && img.naturalWidth > 0);
  }, null, { timeout: 30_000 });
  return page.locator(".crops img").count();
}

async function expectingRefusals(step) {
  refusalsExpected = true;
  try {
    return await step();
  } finally {
    refusalsExpected = false;
  }
}

/** Through the sign-in panel, as a user pastes a token; then the page the address names. */
async function signIn(page, token) {
  await page.getByRole("heading", { name: "Sign in", exact: true }).waitFor();
  await page.getByLabel("Access token").fill(token);
  await page.getByRole("button", { name: "Sign in", exact: true }).click();
  await page.locator("#session-user").waitFor();
}

async function signOut(page) {
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("heading", { name: "Sign in", exact: true }).waitFor();
}

const identityRows = (page) => page.locator("section.identity[data-identity]");
const row = (page, id) => page.locator(`section.identity[data-identity="${id}"]`);

async function uploadEpisode(page, video, epId) {
  await page.goto(config.url);
  await page.getByRole("heading", { name: "Episodes", exact: true }).waitFor();
  await page.getByLabel("Video file").setInputFiles(video);
  await page.getByLabel("Episode id").fill(epId);
  await page.getByRole("button", { name: "Upload" }).click();
  await page.getByRole("heading", { name: `Episode ${epId}`, exact: true }).waitFor({ timeout: 60_000 });
}

async function runFromPage(page, stride, saveCrops) {
  await page.getByLabel("Stride").fill(String(stride));
  if (!saveCrops) await page.getByLabel("Save face crops").uncheck();
  await page.getByRole("button", { name: "Start run" }).click();
  const seen = [];
  const deadline = Date.now() + LONG;
  while (!(await page.locator("#run-done").count())) {
    if (await page.locator(".banner.failed").count()) throw new Error(`run failed: ${await page.locator(".banner.failed").textContent()}`);
    check(Date.now() < deadline, "the run did not finish in time");
    const bar = await page.locator("#run-progress").evaluate((e) => [e.value, e.max, e.dataset.stage]).catch(() => null);
    if (bar) seen.push(bar);
    await page.waitForTimeout(200);
  }
  seen.push(await page.locator("#run-progress").evaluate((e) => [e.value, e.max, e.dataset.stage]));
  return seen;
}

// ---- the Show page ------------------------------------------------------------------------------

const SHOW = "demo";
const PLACES = [["sample", 1, 1], ["sample-b", 1, 2], ["short", 2, 1]]; // episode, season, number

/** The show table as data: columns, and per row its name, kind and the text and link of each cell. */
async function showTable(page) {
  return page.locator("table.show-table").evaluate((table) => {
    const columns = [...table.querySelectorAll("thead th")].map((th) => (th.querySelector(".col-label") || th).textContent.trim());
    const eps = [...table.querySelectorAll("thead th[data-ep]")].map((th) => th.dataset.ep);
    const rows = [...table.querySelectorAll("tbody tr")].map((tr) => ({
      rowId: tr.dataset.row,
      name: tr.querySelector("th").textContent.trim(),
      named: tr.classList.contains("named"),
      cells: Object.fromEntries(eps.map((ep) => [ep, tr.querySelector(`td[data-ep="${ep}"]`).textContent.trim()])),
      links: Object.fromEntries(eps.map((ep) => [ep, tr.querySelector(`td[data-ep="${ep}"] a`)?.getAttribute("href") ?? null])),
    }));
    return { columns, eps, rows };
  });
}

/** The unknown people's cards: their identities ("ep/identity") with link state, and suggestions. */
async function unknownCards(page) {
  return page.locator("section.show-person").evaluateAll((cards) =>
    cards.map((card) => ({
      rowId: card.dataset.row,
      name: card.querySelector("h3").textContent.trim(),
      identities: [...card.querySelectorAll("li[data-identity]")].map((li) => ({ ref: li.dataset.identity, link: li.dataset.link })),
      suggestions: [...card.querySelectorAll("li[data-suggestion]")].map((li) => li.dataset.suggestion),
    })),
  );
}

async function showChart(page) {
  return page.locator("figure.show-chart").evaluate((chart) => ({
    legend: [...chart.querySelectorAll(".legend li")].map((li) => li.textContent.trim()),
    bars: [...chart.querySelectorAll(".bars li")].map((li) => ({
      rowId: li.dataset.row,
      segments: [...li.querySelectorAll(".seg")].map((s) => [s.dataset.ep, parseFloat(s.style.width), getComputedStyle(s).backgroundColor]),
    })),
    swatches: [...chart.querySelectorAll(".legend .swatch")].map((s) => getComputedStyle(s).backgroundColor),
  }));
}

const shown = (cell) => cell !== "—" && parseFloat(cell) > 0;
const cardOf = (cards, ref) => cards.find((c) => c.identities.some((i) => i.ref === ref));

async function showSteps(page) {
  const started = Date.now();
  // A second episode: the same video under another id, run without crops (the cheapest real run).
  await uploadEpisode(page, config.video, "sample-b");
  await runFromPage(page, config.stride, false);
  const ran = Date.now();

  // Episodes page: each episode's show, season and number set from a dialog (Enter submits).
  await page.goto(`${config.url}/#/`);
  for (const [ep, season, number] of PLACES) {
    await page.locator(`tr[data-episode="${ep}"]`).getByRole("button", { name: "Set show…" }).click();
    const dialog = page.getByRole("dialog");
    await dialog.getByLabel("Show", { exact: true }).fill(SHOW);
    await dialog.getByLabel("Season", { exact: true }).fill(String(season));
    await dialog.getByLabel("Episode number", { exact: true }).fill(String(number));
    await dialog.getByLabel("Episode number", { exact: true }).press("Enter");
    await page.getByText(`${ep} is in show ${SHOW}, season ${season}, episode ${number}.`).waitFor();
    await dialog.waitFor({ state: "detached" });
  }
  const listed = await page.locator("table.episodes tbody tr").evaluateAll((rows) =>
    rows.map((tr) => [tr.dataset.episode, ...[2, 3, 4].map((i) => tr.children[i - 1].textContent.trim())]),
  );
  for (const [ep, season, number] of PLACES) {
    const found = listed.find((r) => r[0] === ep);
    check(found && found[1] === SHOW && found[2] === String(season) && found[3] === String(number), `episodes table: ${JSON.stringify(listed)}`);
  }
  // Reloaded from storage, not just the page's notice.
  await page.reload();
  await page.locator('tr[data-episode="short"] td.season', { hasText: "2" }).waitFor();

  // The Show page, from the episode's show link: every season.
  await page.locator('tr[data-episode="sample-b"]').getByRole("link", { name: SHOW, exact: true }).click();
  await page.getByRole("heading", { name: `Show: ${SHOW}`, exact: true }).waitFor();
  check(page.url().endsWith(`#/shows/${SHOW}`), `show link went to ${page.url()}`);
  const all = await showTable(page);
  const expectAll = ["Person", "S1E1", "S1E2", "S2E1", "Total", "Share", "Episodes"];
  check(JSON.stringify(all.columns) === JSON.stringify(expectAll), `show columns: ${JSON.stringify(all.columns)}`);
  check(JSON.stringify(all.eps) === JSON.stringify(PLACES.map(([ep]) => ep)), `episode order: ${all.eps}`);
  // Named people first; the reviewer's name from the faces page is a row with sample's seconds.
  const firstUnknown = all.rows.findIndex((r) => !r.named);
  check(firstUnknown !== 0 && all.rows.slice(firstUnknown).every((r) => !r.named), `named rows not first: ${JSON.stringify(all.rows)}`);
  check(all.rows.slice(firstUnknown).every((r) => /^unknown person #\d+$/.test(r.name)), `unknown rows: ${all.rows.map((r) => r.name)}`);
  const named = all.rows.find((r) => r.name === config.name);
  check(named && shown(named.cells.sample), `no ${config.name} row with seconds in sample: ${JSON.stringify(all.rows)}`);
  check(named.links.sample === "#/episodes/sample/screen-time", `the cell links to ${named.links.sample}`);
  for (const r of all.rows) check(Object.entries(r.cells).every(([ep, c]) => shown(c) === (r.links[ep] !== null)), `a cell without its link: ${JSON.stringify(r)}`);
  // The chart: a bar per row, a segment per episode the person is in, coloured like the legend.
  const chart = await showChart(page);
  check(JSON.stringify(chart.legend) === JSON.stringify(["S1E1", "S1E2", "S2E1"]), `legend: ${chart.legend}`);
  check(chart.bars.length === all.rows.length, `${chart.bars.length} bars for ${all.rows.length} rows`);
  for (const [i, bar] of chart.bars.entries()) {
    const row = all.rows[i];
    const expected = all.eps.filter((ep) => shown(row.cells[ep]));
    check(bar.rowId === row.rowId && JSON.stringify(bar.segments.map(([ep]) => ep)) === JSON.stringify(expected), `bar ${JSON.stringify(bar)} for ${JSON.stringify(row)}`);
    for (const [ep, width, colour] of bar.segments) check(width > 0 && colour === chart.swatches[all.eps.indexOf(ep)], `segment ${ep}: ${width}% ${colour}`);
  }
  check(chart.bars.some((b) => b.segments.reduce((sum, [, w]) => sum + w, 0) > 99), "no bar spans the chart (the longest total)");
  result.show = { columns: all.columns, rows: all.rows.length, named: named.name };
  await page.screenshot({ path: path.join(config.outDir, "show-page.png"), fullPage: true });
  result.steps.push("show-page");

  // Season 1 from the selector: the two sample episodes only.
  await page.getByLabel("Season", { exact: true }).selectOption("1");
  await page.getByRole("button", { name: "Show season" }).click();
  await page.getByRole("heading", { name: `Show: ${SHOW} · season 1`, exact: true }).waitFor();
  check(page.url().endsWith(`#/shows/${SHOW}/season/1`), `season picker went to ${page.url()}`);
  const before = await showTable(page);
  const expectS1 = ["Person", "S1E1", "S1E2", "Total", "Share", "Episodes"];
  check(JSON.stringify(before.columns) === JSON.stringify(expectS1), `season 1 columns: ${JSON.stringify(before.columns)}`);

  // The same video twice: its unknown people are linked across both episodes automatically.
  const spanning = before.rows.filter((r) => !r.named && shown(r.cells.sample) && shown(r.cells["sample-b"]));
  check(spanning.length >= 1, `no unknown row spans both episodes: ${JSON.stringify(before.rows)}`);
  const cards = await unknownCards(page);
  check(cards.length === before.rows.filter((r) => !r.named).length, "a card per unknown row");
  const linked = cards.find((c) => c.rowId === spanning[0].rowId);
  const sampleRef = linked.identities.find((i) => i.ref.startsWith("sample/"))?.ref;
  const otherRef = linked.identities.find((i) => i.ref.startsWith("sample-b/"))?.ref;
  check(sampleRef && otherRef && linked.identities.every((i) => i.link === "auto"), `linked row: ${JSON.stringify(linked)}`);
  result.show.spanning = spanning.map((r) => r.name);
  result.show.linked = [sampleRef, otherRef];
  const seconds = { sample: spanning[0].cells.sample, "sample-b": spanning[0].cells["sample-b"] };

  // "Not the same person": the sample-b identity becomes a row of its own.
  await page.locator(`section.show-person li[data-identity="${otherRef}"]`).getByRole("button", { name: "Not the same person" }).click();
  await page.getByText(/is no longer linked to unknown person #\d+\.$/).waitFor();
  const split = await showTable(page);
  const splitCards = await unknownCards(page);
  check(split.rows.length === before.rows.length + 1, `unlinking made ${split.rows.length} rows from ${before.rows.length}`);
  const alone = cardOf(splitCards, otherRef);
  check(alone && alone.identities.length === 1 && alone.identities[0].link === "single", `unlinked: ${JSON.stringify(alone)}`);
  const aloneRow = split.rows.find((r) => r.rowId === alone.rowId);
  check(aloneRow.cells.sample === "—" && aloneRow.cells["sample-b"] === seconds["sample-b"], `its row: ${JSON.stringify(aloneRow)}`);
  const rest = cardOf(splitCards, sampleRef);
  check(rest && rest.rowId !== alone.rowId && !rest.identities.some((i) => i.ref.startsWith("sample-b/")), `the row left: ${JSON.stringify(rest)}`);
  result.show.unlinked = aloneRow.name;

  // "Same person" on the suggestion joins them again, as the reviewer's decision.
  check(alone.suggestions.includes(rest.rowId), `the split rows do not suggest each other: ${JSON.stringify(alone)}`);
  await page.locator(`section.show-person[data-row="${alone.rowId}"] li[data-suggestion="${rest.rowId}"]`).getByRole("button", { name: "Same person" }).click();
  await page.getByText(/^Linked unknown person #\d+ and unknown person #\d+ as one person\.$/).waitFor();
  const joined = cardOf(await unknownCards(page), otherRef);
  check(joined.identities.some((i) => i.ref === sampleRef) && joined.identities.every((i) => i.link === "confirmed"), `joined: ${JSON.stringify(joined)}`);
  check((await showTable(page)).rows.length === before.rows.length, "linking did not make one row of two");

  // "Name…": one name for the identities of both episodes (keyboard: Enter saves).
  const card = page.locator(`section.show-person[data-row="${joined.rowId}"]`);
  await card.getByRole("button", { name: "Name…" }).click();
  await card.getByLabel(`Name for ${joined.name}`).fill(config.showName);
  await card.getByLabel(`Name for ${joined.name}`).press("Enter");
  await page.getByText(`Named ${joined.name} ${config.showName} (2 identities).`).waitFor();
  const namedTable = await showTable(page);
  const person = namedTable.rows.find((r) => r.name === config.showName);
  check(person && person.named, `no row named ${config.showName}: ${JSON.stringify(namedTable.rows)}`);
  check(person.cells.sample === seconds.sample && person.cells["sample-b"] === seconds["sample-b"], `named row ${JSON.stringify(person)}, was ${JSON.stringify(seconds)}`);
  check(!cardOf(await unknownCards(page), otherRef), "the named identities are still listed as unknown");
  result.show.namedCells = [person.cells.sample, person.cells["sample-b"]];

  // A suggestion of a named person: "Same person" gives the unknown row that name. sample-b ran after
  // Barack Obama was enrolled (and was named by the facebank), sample before: its Obama is unknown.
  const obama = "Barack Obama";
  const obamaRow = namedTable.rows.find((r) => r.name === obama);
  check(obamaRow && obamaRow.named && shown(obamaRow.cells["sample-b"]) && !shown(obamaRow.cells.sample), `${obama}: ${JSON.stringify(obamaRow)}`);
  const unknownObama = (await unknownCards(page)).find((c) => c.suggestions.includes(obamaRow.rowId));
  check(unknownObama && unknownObama.identities.every((i) => i.ref.startsWith("sample/")), `no unknown row suggests ${obama}: ${JSON.stringify(await unknownCards(page))}`);
  const obamaSeconds = namedTable.rows.find((r) => r.rowId === unknownObama.rowId).cells.sample;
  await page.locator(`section.show-person[data-row="${unknownObama.rowId}"] li[data-suggestion="${obamaRow.rowId}"]`).getByRole("button", { name: "Same person" }).click();
  await page.getByText(`Named ${unknownObama.name} ${obama} (1 identity).`).waitFor();
  const both = (await showTable(page)).rows.find((r) => r.name === obama);
  check(both.cells.sample === obamaSeconds && both.cells["sample-b"] === obamaRow.cells["sample-b"], `${obama} after naming: ${JSON.stringify(both)}`);
  result.show.suggestedNamed = [both.cells.sample, both.cells["sample-b"]];
  await page.screenshot({ path: path.join(config.outDir, "show-page-named.png"), fullPage: true });
  result.steps.push("show-page-named");

  // The header's "Shows": every show with its episodes and seasons, a link to each.
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Shows" }).click();
  await page.getByRole("heading", { name: "Shows", exact: true }).waitFor();
  const listedShow = await page.locator(`tr[data-show="${SHOW}"] td`).allTextContents();
  check(listedShow[0] === "3" && listedShow[1] === "season 1, season 2", `shows page: ${listedShow}`);

  // A rename in each episode's review: sample-b's own screen time carries the name.
  await page.goto(`${config.url}/#/episodes/sample-b/screen-time`);
  await page.locator("table.people tbody tr", { hasText: config.showName }).waitFor();

  // Faces page: a named identity's faces promoted into the show's facebank.
  await page.goto(`${config.url}/#/episodes/sample/faces`);
  const reviewed = page.locator("section.identity", { has: page.getByRole("heading", { level: 2, name: config.name, exact: true }) });
  await reviewed.getByRole("button", { name: "Add to facebank" }).click();
  await page.locator("#facebank-result, #error:not([hidden])").first().waitFor({ timeout: 60_000 });
  check(await page.locator("#error").isHidden(), `add to facebank failed: ${await page.locator("#error").textContent()}`);
  result.show.facebank = await page.locator("#facebank-result p").textContent();
  result.show.facebankRejected = await page.locator("#facebank-result .rejected li").allTextContents();
  await shot(page, "faces-add-facebank");
  check(new RegExp(`^Added [1-9]\\d* face\\(s\\) of ${config.name} to the facebank of ${SHOW}`).test(result.show.facebank), result.show.facebank);
  await page.goto(`${config.url}/#/facebank/${SHOW}`);
  await page.locator("li.person", { hasText: config.name }).locator("img").first().waitFor();
  result.show.seconds = { run: (ran - started) / 1000, pages: (Date.now() - ran) / 1000 };
}

// S3 mode: crops come from presigned URLs of the S3 server, and deleting with the S3 choice removes objects.
async function s3Scenario(page) {
  await page.goto(config.url);
  await signIn(page, config.tokens.admin);
  await uploadEpisode(page, config.shortVideo, "short-s3");
  await runFromPage(page, 2, true);
  await page.locator("#run-done").getByRole("link", { name: "Review faces" }).click();
  result.cropsShown = await cropsLoaded(page);
  result.cropUrl = await page.locator(".crops img").first().getAttribute("src");
  await shot(page, "s3-faces");
  await page.goto(`${config.url}/#/`);
  await page.locator('tr[data-episode="short-s3"]').getByRole("button", { name: "Delete…" }).click();
  await page.getByRole("dialog").getByLabel("Also delete S3 artifacts").check();
  await page.getByRole("dialog").getByRole("button", { name: "Delete episode" }).click();
  result.deleted = await page.getByText(/^Deleted short-s3:/).textContent();
}

async function main() {
  const browser = await chromium.launch({ executablePath: config.chromium, headless: true, args: ["--no-sandbox"] });
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.on("pageerror", (error) => result.consoleErrors.push(String(error)));
  page.on("console", (message) => {
    if (message.type() !== "error") return;
    const expected = refusalsExpected && REFUSED_CALL.test(message.text());
    (expected ? result.expectedConsoleErrors : result.consoleErrors).push(message.text());
  });
  try {
    if (config.scenario === "s3") await s3Scenario(page);
    else await reviewScenario(page);
  } catch (error) {
    await shot(page, "failure").catch(() => undefined);
    result.error = String(error.stack || error);
  } finally {
    await browser.close();
  }
  writeFileSync(path.join(config.outDir, `result-${config.scenario}.json`), JSON.stringify(result, null, 1));
  console.log(JSON.stringify(result));
  process.exit(result.error ? 1 : 0);
}

// The reviewer's day on the sample episode, local storage.
async function reviewScenario(page) {
  // Sign-in first: nothing else is shown, nothing is called without a token.
  await page.goto(config.url);
  await page.getByRole("heading", { name: "Sign in", exact: true }).waitFor();
  check(await page.locator("#main").isHidden(), "the pages show before sign-in");
  result.signInHint = await page.locator("#signin-command").textContent();
  await shot(page, "signin");

  // A token the issuer never signed (a real one with its signature altered): refused by the server,
  // back to the panel with the server's sentence, nothing kept.
  const [head, body, signature] = config.tokens.reviewer.split(".");
  const forged = [head, body, (signature[0] === "A" ? "B" : "A") + signature.slice(1)].join(".");
  await expectingRefusals(async () => {
    await page.getByLabel("Access token").fill(forged);
    await page.getByLabel("Access token").press("Enter"); // the panel submits from the keyboard too
    await page.locator("#signin-error").waitFor();
  });
  result.invalidTokenError = await page.locator("#signin-error").textContent();
  check(await page.getByRole("heading", { name: "Sign in", exact: true }).isVisible(), "an invalid token left the sign-in panel");
  check((await page.evaluate(() => sessionStorage.length)) === 0, "the refused token was kept");
  await shot(page, "signin-invalid");

  // A reviewer does the day's work (everything but deleting); the token lives in sessionStorage only.
  await signIn(page, config.tokens.reviewer);
  result.signedInAs = await page.locator("#session").textContent();
  const stored = await page.evaluate(() => [sessionStorage.length, localStorage.length]);
  check(stored[0] === 1 && stored[1] === 0, `the token should be in sessionStorage only: ${stored}`);

  // Episodes: empty, then the sample episode uploaded in chunks from the page.
  await page.getByText("No episodes yet").waitFor();
  await uploadEpisode(page, config.video, "sample");

  // Episode detail: a run started from the page; the bar moves with the server stream, then the banner.
  const progress = await runFromPage(page, config.stride, true);
  const values = progress.map(([value]) => value);
  const [last, max] = progress.at(-1);
  check(values.some((v) => v > 0 && v < max), `no intermediate progress seen: ${JSON.stringify(progress)}`);
  check(values.every((v, i) => i === 0 || v >= values[i - 1]), `progress went backwards: ${values}`);
  check(last === max && progress.at(-1)[2] === "done", `the bar did not end full: ${JSON.stringify(progress.at(-1))}`);
  result.progress = progress;
  result.banner = await page.locator("#run-done").textContent();
  check(/retinaface \+ bytetrack/.test(result.banner) && /identities/.test(result.banner), result.banner);
  await shot(page, "episode");

  // Faces review: identity rows of real crops.
  await page.locator("#run-done").getByRole("link", { name: "Review faces" }).click();
  await identityRows(page).first().waitFor();
  result.cropsShown = await cropsLoaded(page);
  const ids = await identityRows(page).evaluateAll((rows) => rows.map((r) => r.dataset.identity));
  result.identitiesBefore = ids;
  check(ids.length >= 2, `the sample episode should give several identities, got ${ids}`);
  await shot(page, "faces");

  // Merge the smallest identity into the largest, name the largest.
  const [target, source] = [ids[0], ids.at(-1)];
  await row(page, source).getByLabel(`Merge ${source} into`).selectOption(target);
  await row(page, source).getByRole("button", { name: "Merge into" }).click();
  await page.getByText(`Merged ${source} into ${target}.`).waitFor();
  check((await identityRows(page).count()) === ids.length - 1, "the merged identity is still listed");
  await row(page, target).getByLabel(`Name for ${target}`).fill(config.name);
  await row(page, target).getByLabel(`Name for ${target}`).press("Enter"); // forms submit from the keyboard
  await page.getByText(`Renamed ${target} to ${config.name}.`).waitFor();

  // Persisted: a reload reads the review state back from the services.
  await page.reload();
  await identityRows(page).first().waitFor();
  check((await identityRows(page).count()) === ids.length - 1, "the merge did not survive a reload");
  check((await row(page, source).count()) === 0, `${source} came back after the reload`);
  check((await row(page, target).getByRole("heading", { level: 2 }).textContent()) === config.name, "the name did not survive a reload");
  result.merged = { source, target, name: config.name };

  // "Load more" follows ListTrackCrops' cursor: a row with more crops gets more images.
  await cropsLoaded(page);
  const offering = page.locator("section.identity", { has: page.locator("button.more:visible") });
  check((await offering.count()) >= 1, "no identity row offers more crops");
  const moreRow = row(page, await offering.first().getAttribute("data-identity"));
  const shownBefore = await moreRow.locator(".crops img").count();
  await moreRow.locator("button.more").click();
  await page.waitForFunction(
    ([id, n]) => document.querySelectorAll(`section[data-identity="${id}"] .crops img`).length > n,
    [await moreRow.getAttribute("data-identity"), shownBefore],
  );
  result.loadMore = [shownBefore, await moreRow.locator(".crops img").count()];

  // Track view: every crop of each track of the merged identity, then move / remove / delete a track.
  await row(page, target).getByRole("button", { name: /^Tracks/ }).click();
  const tracks = row(page, target).locator(".track");
  await tracks.first().locator(".crops img").first().waitFor();
  const trackIds = await tracks.evaluateAll((ts) => ts.map((t) => t.dataset.track));
  check(trackIds.length >= 2, `the merged identity should have >= 2 tracks, got ${trackIds}`);
  await page.waitForFunction((id) => !document.querySelector(`section[data-identity="${id}"] button[aria-expanded]`).disabled, target);
  await cropsLoaded(page);
  await shot(page, "faces-tracks");
  const moved = trackIds.at(-1);
  await tracks.last().getByLabel(`Move track ${moved} to`).selectOption("");
  await tracks.last().getByRole("button", { name: "Move to" }).click();
  await page.getByText(`Moved track ${moved} to a new identity.`).waitFor();
  check((await identityRows(page).count()) === ids.length, "moving a track to a new identity made none");

  await row(page, target).getByRole("button", { name: /^Tracks/ }).click();
  const removed = trackIds[0];
  await row(page, target).locator(`.track[data-track="${removed}"]`).getByRole("button", { name: "Remove from identity" }).click();
  await page.getByText(`Removed track ${removed} from ${target}.`).waitFor();
  const loose = page.locator("section.loose");
  await loose.locator(`.track[data-track="${removed}"]`).waitFor();
  await loose.locator(`.track[data-track="${removed}"]`).getByRole("button", { name: "Delete track" }).click();
  await page.getByText(`Deleted track ${removed}.`).waitFor();
  check(/0 unassigned, 1 deleted/.test(await page.locator("section.loose .meta").textContent()), "the deleted track is not counted");
  await page.getByRole("button", { name: "Undo last change" }).click();
  await page.getByText("Undid the last change.").waitFor();
  check(/1 unassigned, 0 deleted/.test(await page.locator("section.loose .meta").textContent()), "undo did not restore the track");
  await page.getByRole("button", { name: "Undo last change" }).click();
  await page.locator("section.loose").waitFor({ state: "detached" });
  check((await row(page, target).getByRole("button", { name: /^Tracks/ }).textContent()) === `Tracks (${trackIds.length - 1})`, "undo did not put the track back");
  result.trackOps = { moved, removed };

  // Screen time: a table and a timeline per person, with the reviewer's name in it.
  await page.goto(`${config.url}/#/episodes/sample/screen-time`);
  const person = page.locator("table.people tbody tr", { hasText: config.name });
  await person.waitFor();
  result.screenTimeSegments = await person.locator(".segment").count();
  check(result.screenTimeSegments > 0, "no timeline segment for the named person");
  result.screenTimeRows = await page.locator("table.screentime tbody tr").count();
  await shot(page, "screen-time");

  // Facebank: enrol from seed images; the group photo is rejected with its reason.
  await page.goto(`${config.url}/#/facebank`);
  await page.getByRole("heading", { name: "Facebank: default" }).waitFor();
  await page.getByLabel("Name", { exact: true }).fill("Barack Obama");
  await page.getByLabel("Seed images").setInputFiles(config.seedImages);
  await page.getByRole("button", { name: "Enrol" }).click();
  await page.locator("#enrol-result").waitFor({ timeout: 60_000 });
  result.enrolled = await page.locator("#enrol-result").textContent();
  result.rejected = await page.locator(".rejected li").allTextContents();
  check((await page.locator('li.person[data-person="barack-obama"] img').count()) >= 1, "no exemplar crop shown");
  await shot(page, "facebank");

  // A second, short episode without crops: harvest them from the faces page.
  await uploadEpisode(page, config.shortVideo, "short");
  await runFromPage(page, 2, false);
  await page.goto(`${config.url}/#/episodes/short/faces`);
  await row(page, await identityRows(page).first().getAttribute("data-identity")).getByRole("button", { name: /^Tracks/ }).click();
  await page.getByRole("button", { name: "Harvest crops" }).first().click();
  await page.getByText(/Harvested [1-9]\d* crop\(s\)/).waitFor({ timeout: 60_000 });
  result.harvestedCrops = await cropsLoaded(page);

  // Across episodes: the sample again as a second episode, three episodes in one show, two seasons.
  await showSteps(page);

  // A service error reads as a sentence in the page.
  await page.goto(`${config.url}/#/episodes/no-such-episode`);
  await page.locator("#error").waitFor();
  result.errorText = await page.locator("#error").textContent();

  // A reviewer may not delete: the dialog says so in the server's words, the episode stays.
  await page.goto(`${config.url}/#/`);
  await page.locator('tr[data-episode="short"]').getByRole("button", { name: "Delete…" }).click();
  await expectingRefusals(async () => {
    await page.getByRole("dialog").getByRole("button", { name: "Delete episode" }).click();
    await page.getByRole("dialog").locator(".dialog-error").waitFor();
  });
  result.deleteDenied = await page.getByRole("dialog").locator(".dialog-error").textContent();
  await shot(page, "delete-denied");
  await page.getByRole("dialog").getByRole("button", { name: "Cancel" }).click();
  await page.getByRole("dialog").waitFor({ state: "detached" });
  await page.reload();
  await page.locator('tr[data-episode="short"]').waitFor();
  check(await page.locator("#session-user").isVisible(), "a refused delete signed the reviewer out");

  // An admin deletes. Signing out forgets the token.
  await signOut(page);
  check((await page.evaluate(() => sessionStorage.length)) === 0, "signing out kept the token");
  await signIn(page, config.tokens.admin);

  // Episodes: delete one with the S3 choice and see the counts, then delete all behind the phrase.
  await page.locator('tr[data-episode="short"]').waitFor();
  await shot(page, "episodes");
  await page.locator('tr[data-episode="short"]').getByRole("button", { name: "Delete…" }).click();
  await page.keyboard.press("Escape");
  await page.getByRole("dialog").waitFor({ state: "detached" });
  await page.locator('tr[data-episode="short"]').getByRole("button", { name: "Delete…" }).click();
  await page.getByRole("dialog").getByLabel("Also delete S3 artifacts").check();
  await page.getByRole("dialog").getByRole("button", { name: "Delete episode" }).click();
  result.deleted = await page.getByText(/^Deleted short:/).textContent();
  const deleteAll = page.getByRole("button", { name: "Delete all episodes" });
  check(await deleteAll.isDisabled(), "delete all is enabled before the phrase is typed");
  await page.getByLabel("Confirmation").fill("delete all episodes");
  await deleteAll.click();
  result.deletedAll = await page.getByText(/^Deleted 2 episode\(s\)/).textContent(); // sample and sample-b
  await page.getByText("No episodes yet").waitFor();

  // The token expires while the page is open (swapped for an expired one here): the next call is
  // refused, the token is dropped and the panel says why.
  await page.evaluate((expired) => {
    for (let i = 0; i < sessionStorage.length; i++) sessionStorage.setItem(sessionStorage.key(i), expired);
  }, config.tokens.expired);
  await expectingRefusals(async () => {
    await page.goto(`${config.url}/#/facebank`);
    await page.locator("#signin-error").waitFor();
  });
  result.expiredTokenError = await page.locator("#signin-error").textContent();
  check((await page.evaluate(() => sessionStorage.length)) === 0, "the expired token was kept");
  check(await page.locator("#main").isHidden(), "the pages still show after the token expired");
}

main();
