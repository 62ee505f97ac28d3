// Eddy's dashboard in headless Chromium (Debian's /usr/bin/chromium through
// playwright-core). Started by scripts/ui-test.sh, which brings up `eddy up`,
// creates the tenant and deploys `fanout` (and `fx-fail`, which leaves one
// dead letter). Here: open /ui#key=<tenant key>, start a fanout run (B=4,
// D=4: 341 invocations) from the page, wait until its progress shows 100 %
// and the fanout function's counters moved, redrive the dead letter from the
// page, and save a screenshot. Prints `1 passed, 0 failed` (or
// `0 passed, 1 failed`) last and exits non-zero on failure.
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

const base = process.env.EDDY_URL || 'http://127.0.0.1:8080';
const key = process.env.EDDY_UI_KEY;
const root = process.env.EDDY_ROOT || path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const artifacts = process.env.CI_ARTIFACTS || path.join(root, '.eddy/artifacts');
// docs/dashboard.png (the README's picture) only when asked, so that a test
// run does not dirty the tree.
const shots = [path.join(artifacts, 'dashboard.png')];
if (process.env.UI_SCREENSHOT_DOCS === '1') shots.push(path.join(root, 'docs/dashboard.png'));
const started = Date.now();
const log = (m) => console.log(`ui-test: ${m}`);
const elapsed = () => `${((Date.now() - started) / 1000).toFixed(1)} s`;

function check(cond, what) {
  if (!cond) throw new Error(what);
}

async function run(page) {
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console error: ${m.text()}`); });

  // Without a key: the event stream is the API's own 401; the page is the
  // one that opens a session.
  const anon = await page.request.get(`${base}/ui/events`);
  check(anon.status() === 401, `/ui/events without a key answered ${anon.status()}, not 401`);

  // The key in the address's fragment (never sent, never kept): the page
  // trades it for an HttpOnly session cookie and loads the dashboard.
  const resp = await page.goto(`${base}/ui#key=${encodeURIComponent(key)}`);
  check(resp && resp.status() === 200, `/ui answered ${resp && resp.status()}`);
  check((resp.headers()['content-security-policy'] || '').includes("script-src 'nonce-"), 'no nonce CSP on /ui');
  await page.waitForSelector('#conn[data-state="live"]', { timeout: 10_000 });
  check(!page.url().includes(key), `the key stayed in the address: ${page.url()}`);
  const jsCookies = await page.evaluate(() => document.cookie);
  check(!jsCookies.includes('eddy_session'), 'the session cookie is readable by scripts');
  const cookies = await page.context().cookies();
  const session = cookies.find((c) => c.name === 'eddy_session');
  check(session && session.httpOnly && session.sameSite === 'Strict', `session cookie: ${JSON.stringify(session)}`);
  await page.waitForSelector('tr[data-fn="fanout"]', { timeout: 15_000 });
  // The tenant's schedule, with its cron and next tick (03:00 UTC).
  await page.waitForSelector('#sc-body tr[data-schedule="nightly"]', { timeout: 10_000 });
  const sched = await page.locator('#sc-body tr[data-schedule="nightly"]').innerText();
  check(sched.includes('0 3 * * *') && sched.includes('fanout') && /03:00:00Z/.test(sched), `schedule row: ${sched}`);
  log(`page live, fanout listed (${elapsed()})`);

  // Start a fanout run from the page: B=4, D=4.
  await page.fill('#start-fn', 'fanout');
  await page.fill('#start-b', '4');
  await page.fill('#start-d', '4');
  await page.click('#start-run');
  await page.waitForSelector('.run[data-run]', { timeout: 10_000 });
  const runId = await page.getAttribute('.run[data-run]', 'data-run');
  log(`run ${runId} started from the page (${elapsed()})`);
  await page.waitForSelector('.run[data-status="succeeded"] .run-percent[data-percent="100"]', { timeout: 90_000 });
  const counts = await page.textContent('.run .run-counts');
  check(/341 accepted/.test(counts) && /341 succeeded/.test(counts), `run counts: ${counts}`);
  log(`run at 100 %: ${counts.replace(/\s+/g, ' ').trim()} (${elapsed()})`);

  // The function's counters moved.
  const completed = async () => Number(((await page.textContent('tr[data-fn="fanout"] td[data-col="completed"]')) || '0').replace(/[^0-9]/g, ''));
  await page.waitForFunction(() => {
    const td = document.querySelector('tr[data-fn="fanout"] td[data-col="completed"]');
    return td && Number(td.textContent.replace(/[^0-9]/g, '')) >= 341;
  }, null, { timeout: 30_000 });
  log(`fanout completed = ${await completed()} (${elapsed()})`);
  // The run's tree is drawn, and the sampled durations reached the table.
  const nodes = await page.locator('.run .tree .node').count();
  check(nodes >= 5, `the run's tree shows ${nodes} nodes`);
  await page.waitForFunction(() => {
    const td = document.querySelector('tr[data-fn="fanout"] td[data-col="pct"]');
    return td && /\d/.test(td.textContent);
  }, null, { timeout: 10_000 });
  check(await page.locator('#inv-body tr[data-inv]').count() > 0, 'no recent invocations listed');

  // The dead letter of fx-fail, redriven from the page (it fails again).
  await page.waitForSelector('#dl-body button[data-entry]', { timeout: 20_000 });
  const [redrive] = await Promise.all([
    page.waitForResponse((r) => r.url().includes('/redrive'), { timeout: 10_000 }),
    page.click('#dl-body button[data-entry]'),
  ]);
  check(redrive.status() === 200, `redrive answered ${redrive.status()}`);
  log(`dead letter redriven from the page (${elapsed()})`);

  // Two bigger runs (B=4, D=5: 1,365 invocations each), so that the
  // charts in the screenshot show some traffic.
  await page.fill('#start-d', '5');
  for (let i = 0; i < 2; i++) {
    await page.click('#start-run');
    await page.waitForFunction((n) => document.querySelectorAll('.run[data-run]').length >= n, i + 2, { timeout: 10_000 });
    await page.waitForTimeout(1500);
  }
  await page.waitForFunction(() => document.querySelectorAll('.run[data-status="succeeded"]').length >= 3, null, { timeout: 90_000 });
  log(`three runs done (${elapsed()})`);

  // Show an invocation's logs, select fanout for the charts, let them draw.
  await page.click('tr[data-fn="fanout"]');
  await page.click('#inv-body tr[data-inv]');
  await page.waitForSelector('#inv-detail pre', { timeout: 10_000 });
  await page.waitForTimeout(2500);
  const ticks = Number(await page.getAttribute('body', 'data-ticks'));
  check(ticks >= 5, `only ${ticks} events arrived`);
  check(problems.length === 0, problems.join('; '));
}

let passed = 0;
let failed = 0;
let browser;
let page;
try {
  check(key, 'EDDY_UI_KEY is not set');
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  page = await browser.newPage({ viewport: { width: 1440, height: 1000 }, deviceScaleFactor: 1 });
  await run(page);
  for (const file of shots) {
    mkdirSync(path.dirname(file), { recursive: true });
    await page.screenshot({ path: file, fullPage: true });
  }
  log(`screenshots: ${shots.join(', ')}`);
  passed = 1;
} catch (e) {
  failed = 1;
  console.error(`ui-test: FAILED: ${e && e.stack ? e.stack : e}`);
  if (page) {
    const file = path.join(artifacts, 'dashboard-failure.png');
    try {
      mkdirSync(artifacts, { recursive: true });
      await page.screenshot({ path: file, fullPage: true });
      console.error(`ui-test: screenshot of the failure: ${file}`);
    } catch (_) { /* the page is gone */ }
  }
  if (process.env.EDDY_UI_LOG) {
    try {
      const lines = readFileSync(process.env.EDDY_UI_LOG, 'utf8').trim().split('\n').slice(-30);
      console.error(`ui-test: eddy up's log:\n${lines.join('\n')}`);
    } catch (_) { /* no log */ }
  }
} finally {
  if (browser) await browser.close().catch(() => {});
}
const now = Math.floor(Date.now() / 1000);
const t0 = Number(process.env.EDDY_UI_T0 || now);
const tSetup = Number(process.env.EDDY_UI_T_SETUP || t0);
const tPlatform = Number(process.env.EDDY_UI_T_PLATFORM || tSetup);
log(`time: installs/builds ${tSetup - t0} s, platform ${tPlatform - tSetup} s, browser ${((Date.now() - started) / 1000).toFixed(1)} s, total ${now - t0} s`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
