// Drives Buildbot's own front-end (buildbot-www 4.3 and its waterfall, console and grid plugins,
// installed from PyPI) against a kiln master in headless Chromium: every page shows its data with
// no console error, and a build forced from its dialog (first refused for a missing field, the
// error shown by the field) appears and finishes live over `/ws`.
//
// Run by the Rust test `browser::buildbot_www_works_on_kiln`, which passes KILN_URL,
// KILN_CHROMIUM and NODE_PATH.
import { fail, launch } from "./common.mjs";

const base = process.env.KILN_URL + "/buildbot/";
const { browser, page, problems } = await launch();

// Each route with a text that only shows once its data has arrived over REST and /ws.
const routes = [
  ["", "runtests/1"],
  ["builders", "sample"],
  ["builders/1", "build successful"],
  ["builders/1/builds/1", "Build steps"],
  ["builders/1/builds/1/steps/1/logs/stdio", "hello from"],
  ["workers", "kiln-worker"],
  ["workers/1", "kiln-worker"],
  ["changes", "first change"],
  ["changes/1", "Alice"],
  ["waterfall", "runtests"],
  ["console", "runtests"],
  ["grid", "runtests"],
  ["masters", "runtests"],
  ["schedulers", "force"],
  ["pendingbuildrequests", "Pending Buildrequests:"],
  ["about", "kiln version"],
];

try {
  for (const [route, text] of routes) {
    await page.goto(base + "#/" + route);
    await page.waitForSelector(`text=${text}`);
  }

  // The force dialog: a required field left empty is refused, its error shown in the dialog.
  await page.goto(base + "#/builders/1");
  await page.getByRole("button", { name: "Go", exact: true }).click();
  await page.waitForSelector("[data-bb-test-id=force-field-greeting]");
  await page.click(".modal-footer button.btn-primary");
  await page.waitForSelector(".modal-content >> text=this field is required");
  // The refusal is a 400, which the browser reports as a failed load: expected here.
  for (let i = problems.length - 1; i >= 0; i--) {
    if (problems[i].includes("forceschedulers/force")) problems.splice(i, 1);
  }
  // Filled in, the build is forced; the page follows it to the build, which finishes live.
  await page.fill("[data-bb-test-id=force-field-greeting]", "hello from the dialog");
  await page.click(".modal-footer button.btn-primary");
  await page.waitForURL(/#\/builders\/1\/builds\/3/);
  await page.waitForSelector("text=build successful");
} catch (e) {
  const shown = await page.locator("body").innerText().catch(() => "");
  fail(`${e.message}\nat ${page.url()}, showing:\n${shown.slice(0, 2000)}\n${problems.join("\n")}`);
} finally {
  await browser.close();
}
if (problems.length) fail(problems.join("\n"));
console.log("OK");
