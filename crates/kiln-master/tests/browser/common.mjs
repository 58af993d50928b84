// What the browser scripts share: Chromium launched as this machine allows, and a page whose
// console errors, page errors and failed requests are collected as problems.
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { chromium } = require("playwright-core");

export const WAIT = 30_000;

export function fail(message) {
  console.error("FAILED: " + message);
  process.exit(1);
}

// Chromium with its background traffic off: this machine's network is closed.
export async function launch() {
  const browser = await chromium.launch({
    executablePath: process.env.KILN_CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
  const page = await browser.newPage();
  const problems = [];
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(`console: ${m.text()} (${m.location().url}) on ${page.url()}`);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message} on ${page.url()}`));
  page.on("response", (r) => {
    if (r.status() >= 400) problems.push(`HTTP ${r.status()} for ${r.url()} on ${page.url()}`);
  });
  page.setDefaultTimeout(WAIT);
  return { browser, page, problems };
}
