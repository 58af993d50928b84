// Logs in in headless Chromium and checks that the controls a page shows follow the user's
// roles. KILN_LOGIN says how the master logs users in:
// - `form`: kiln's form and Buildbot's front-end; anonymous and bob see no force form, alice
//   sees it and forces a build, and logging out takes it away again;
// - `oauth2`: the login link goes to an OAuth2 provider and back, logged in;
// - `proxy`: a reverse proxy's header names the user.
//
// Run by the Rust test `browser::logins_change_what_a_browser_can_do`, which passes KILN_URL,
// KILN_CHROMIUM, NODE_PATH, KILN_LOGIN, and KILN_BUILDBOT_WWW when Buildbot's front-end is
// installed.
import { fail, launch } from "./common.mjs";

const url = process.env.KILN_URL;
const { browser, page, problems } = await launch();

async function logIn(user, password) {
  await page.goto(url + "/builders/1");
  await page.click("header >> text=Log in");
  await page.waitForSelector("form.login");
  await page.fill("input[name=username]", user);
  await page.fill("input[name=password]", password);
  await page.click("form.login button[type=submit]");
  await page.waitForURL(url + "/builders/1");
  await page.waitForSelector(`header .user >> text=${user}`);
}

async function logOut() {
  await page.click("header >> text=Log out");
  await page.waitForSelector("header >> text=Log in");
}

const mode = process.env.KILN_LOGIN;

async function noForceForm(who) {
  if (await page.locator("section.force").count()) fail(`${who} sees the force form`);
}

try {
  if (mode === "oauth2") {
    await page.goto(url + "/builders/1");
    await noForceForm("an anonymous visitor");
    await page.click("header >> text=Log in with Corp SSO");
    await page.waitForURL(url + "/builders/1");
    await page.waitForSelector("header .user >> text=O. Idc");
    await page.waitForSelector("section.force");
  } else if (mode === "proxy") {
    await page.goto(url + "/builders/1");
    await noForceForm("an anonymous visitor");
    const context = await browser.newContext({ extraHTTPHeaders: { "X-Remote-User": "alice" } });
    const proxied = await context.newPage();
    await proxied.goto(url + "/builders/1");
    await proxied.waitForSelector("header .user >> text=alice");
    await proxied.waitForSelector("section.force");
    await context.close();
  } else {
  // Anonymous: a login link, and no force form.
  await page.goto(url + "/builders/1");
  await page.waitForSelector("#force-refused >> text=to force builds");
  if (await page.locator("section.force").count()) fail("an anonymous visitor sees the force form");

  // A wrong password is refused on the form, and says so.
  await page.click("header >> text=Log in");
  await page.fill("input[name=username]", "alice");
  await page.fill("input[name=password]", "wrong");
  await page.click("form.login button[type=submit]");
  await page.waitForSelector("text=the user name or password is wrong");
  // The refusal is a 401, which the browser reports as a failed load: expected here.
  for (let i = problems.length - 1; i >= 0; i--) {
    if (problems[i].includes("401")) problems.splice(i, 1);
  }

  // bob logs in, and may not force.
  await logIn("bob", "pw2");
  await page.waitForSelector("#force-refused >> text=You may not force builds here.");
  if (await page.locator("section.force").count()) fail("bob sees the force form");
  await logOut();

  // alice may: she sees the form and forces a build, which runs.
  await logIn("alice", "pw1");
  await page.click("section.force button[type=submit]");
  await page.waitForSelector(".flash >> text=Forced");
  await page.goto(url + "/builders/1/builds/1");
  await page.waitForSelector("text=alice");
  await page.goto(url + "/builders/1");
  await logOut();
  if (await page.locator("section.force").count()) fail("the force form outlives the logout");

  if (process.env.KILN_BUILDBOT_WWW) {
    // Buildbot's front-end: its login item, answered with the browser's credentials, and the
    // user it then shows.
    const context = await browser.newContext({ httpCredentials: { username: "alice", password: "pw1" } });
    const front = await context.newPage();
    await front.goto(url + "/buildbot/#/builders");
    await front.waitForSelector("text=Anonymous");
    await front.goto(url + "/buildbot/auth/login?redirect=/builders");
    await front.waitForURL(/\/buildbot\/#\/builders/);
    await front.waitForSelector("text=alice");
    await context.close();
  }
  }
} catch (e) {
  const shown = await page.locator("body").innerText().catch(() => "");
  fail(`${e.message}\nat ${page.url()}, showing:\n${shown.slice(0, 2000)}\n${problems.join("\n")}`);
} finally {
  await browser.close();
}
if (problems.length) fail(problems.join("\n"));
console.log("OK");
