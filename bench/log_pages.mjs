// Pages through one large log in headless Chromium as a user would, and prints what each visit
// cost as JSON: the first page, three clicks on "next", the last page, one in the middle, and a
// search for a string no line has (the server reads the whole log for it).
//
//   KILN_NODE_MODULES=.../node_modules KILN_CHROMIUM=/usr/bin/chromium \
//     node bench/log_pages.mjs http://127.0.0.1:PORT/builders/1/builds/1/steps/1/logs/stdio LINES
import { createRequire } from "node:module";

const require = createRequire(process.env.KILN_NODE_MODULES.replace(/\/?$/, "/"));
const { chromium } = require("playwright-core");

const [url, totalLines] = [process.argv[2], Number(process.argv[3])];
const browser = await chromium.launch({
  executablePath: process.env.KILN_CHROMIUM,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
});
const page = await browser.newPage();
page.setDefaultTimeout(600_000);
const visits = [];

// One visit: how long the page took to load, how big it was, and how many lines it holds.
async function measure(label, go) {
  const t0 = performance.now();
  const response = await go();
  const ms = performance.now() - t0;
  const bytes = response ? (await response.body()).length : null;
  const lines = await page.locator("span.line").count();
  const heap = await page.evaluate(() => performance.memory && performance.memory.usedJSHeapSize);
  visits.push({ label, ms: Math.round(ms * 10) / 10, bytes, lines, js_heap_bytes: heap });
}

await measure("first page", () => page.goto(`${url}?first=0`));
for (let i = 1; i <= 3; i++) {
  await measure(`next ${i}`, async () => {
    const [response] = await Promise.all([page.waitForNavigation(), page.click("text=next")]);
    return response;
  });
}
await measure("last page", () => page.goto(url));
await measure("middle page", () => page.goto(`${url}?first=${Math.floor(totalLines / 2)}`));
await measure("search, no match", () => page.goto(`${url}?search=no-line-has-this`));
await browser.close();
console.log(JSON.stringify(visits));
