// Drives kiln's pages in headless Chromium, as a person would: every page loads without a
// console error, a build forced from the form appears and finishes without a reload, its log
// tails live, and a running build is stopped from its page.
//
// Run by the Rust test `browser::pages_work_in_a_browser`, which starts the master and worker
// and passes: KILN_URL (the web port), KILN_GO (a file whose creation lets the slow step end),
// KILN_CHROMIUM (the browser) and NODE_PATH (where playwright-core is installed).
import fs from "node:fs";
import { fail, launch } from "./common.mjs";

const base = process.env.KILN_URL;
const go = process.env.KILN_GO;
const { browser, page, problems } = await launch();

async function open(path) {
  const response = await page.goto(base + path);
  if (!response || response.status() !== 200) fail(`${path} answered ${response && response.status()}`);
  // A mark that a reload would wipe: live updates must not reload the page.
  await page.evaluate(() => { window.__kilnMark = "still here"; });
}

async function notReloaded(what) {
  const mark = await page.evaluate(() => window.__kilnMark);
  if (mark !== "still here") fail(`the page was reloaded while ${what}`);
}

try {
  // Force a build from the builder page's form.
  await open("/builders/1");
  await page.fill("#force-force input[name=reason]", "from the browser");
  await page.click("#force-force button[type=submit]");
  await page.waitForSelector(".flash:has-text('Forced: buildset')");
  await page.evaluate(() => { window.__kilnMark = "still here"; });
  // The build appears in the builder's list, running, without a reload.
  await page.waitForSelector("#builds a.build.running:has-text('#1')");
  await notReloaded("the build appeared");

  // Its page shows the slow step running.
  await open("/builders/1/builds/1");
  await page.waitForSelector("#steps li.step.running .name:has-text('slow')");

  // Its log tails live: the line written after `go` appears without a reload.
  await open("/builders/1/builds/1/steps/1/logs/stdio");
  await page.waitForSelector("#log .line:has-text('waiting for go')");
  fs.writeFileSync(go, "");
  await page.waitForSelector("#log .line.o:has-text('went')");
  await notReloaded("the log grew");

  // The build page turns to success by itself.
  await open("/builders/1/builds/1");
  await page.waitForSelector("#build-title .result.success");
  await notReloaded("the build finished");
  fs.unlinkSync(go);

  // A second build is stopped from its page, with a reason.
  await open("/builders/1");
  await page.click("#force-force button[type=submit]");
  await page.waitForSelector("#builds a.build.running:has-text('#2')");
  await open("/builders/1/builds/2");
  await page.waitForSelector("#steps li.step.running .name:has-text('slow')");
  await page.fill("#build-controls input[name=reason]", "stopped from the browser");
  await page.click("#build-controls button:has-text('Stop')");
  await page.waitForSelector(".flash:has-text('Stopping the build')");
  await page.evaluate(() => { window.__kilnMark = "still here"; });
  await page.waitForSelector("#build-title .result.cancelled");
  await notReloaded("the build was stopped");

  // Every other page loads cleanly.
  for (const path of [
    "/", "/waterfall", "/grid", "/tgrid", "/console", "/builders", "/workers", "/workers/1",
    "/changes", "/users", "/one_line_per_build", "/about",
  ]) {
    await open(path);
  }
} catch (e) {
  const shown = await page.locator("main").innerText().catch(() => "");
  fail(`${e.message}\nat ${page.url()}, showing:\n${shown}`);
} finally {
  await browser.close();
}
if (problems.length) fail(problems.join("\n"));
console.log("OK");
