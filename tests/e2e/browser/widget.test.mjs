// Browser tests of <member-sync-widget> in real headless Chromium (Debian's
// /usr/bin/chromium driven by playwright-core), against the real pipeline
// that tests/e2e/test_widget.py starts.  One test per acceptance criterion of
// the user story, plus access control, escaping, the polling fallback and the
// Norwegian text.  Each test saves a screenshot.
//
// Input (environment, set by test_widget.py):
//   MSW_BASE       api base URL (serves /widget/ too)
//   MSW_FIXTURE    JSON: {orgs: {...}, tokens: {...}}
//   MSW_SHOTS      screenshot folder
//   MSW_CHROMIUM   browser binary (default /usr/bin/chromium)
// Output: `PASS name` / `FAIL name: reason` lines, then `N passed, N failed`;
// exit status 1 when anything failed.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const BASE = process.env.MSW_BASE;
const FIX = JSON.parse(process.env.MSW_FIXTURE || '{}');
const SHOTS = process.env.MSW_SHOTS || path.resolve('screenshots');
const CHROMIUM = process.env.MSW_CHROMIUM || '/usr/bin/chromium';
const TZ = 'Europe/Oslo';
fs.mkdirSync(SHOTS, { recursive: true });

class AssertionError extends Error {}
function assert(cond, msg) {
  if (!cond) throw new AssertionError(msg);
}

async function api(method, p, token) {
  const r = await fetch(BASE + p, { method, headers: { Authorization: `Bearer ${token}` } });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

async function until(fn, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new AssertionError(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

let ctx;
const pages = [];

async function openWidget(org, token, { lang = 'en', transport = null, name = 'page' } = {}) {
  const page = await ctx.newPage();
  pages.push(page);
  page.__dialogs = [];
  page.__errors = [];
  page.on('dialog', async (d) => {
    page.__dialogs.push(d.message());
    await d.dismiss();
  });
  page.on('pageerror', (e) => page.__errors.push(String(e)));
  const q = new URLSearchParams({ org, token, lang });
  if (transport) q.set('transport', transport);
  await page.goto(`${BASE}/widget/?${q}`);
  await page.waitForFunction(() => !!customElements.get('member-sync-widget'));
  page.__name = name;
  return page;
}

const card = (page, integ) => page.locator(`member-sync-widget section.card[data-integration="${integ}"]`);

async function shot(page, name) {
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

function clockIn(tz, ms) {
  return new Intl.DateTimeFormat('en-GB', { hour: '2-digit', minute: '2-digit', second: '2-digit', timeZone: tz })
    .format(new Date(ms));
}

// ---------------------------------------------------------------------------
// The main flow on one page: click, progress, completion, second click.
const flow = {};

async function test_click_sync_now_queues_job_and_shows_spinner_within_1s() {
  const { orgA } = FIX.orgs;
  const page = await openWidget(orgA, FIX.tokens.adminA, { name: 'flow' });
  flow.page = page;
  const c = card(page, 'CORNERSTONE');
  await c.locator('button.sync').waitFor({ state: 'visible', timeout: 10000 });
  assert((await c.getAttribute('data-state')) === 'idle', `state before click: ${await c.getAttribute('data-state')}`);
  assert((await c.locator('.last-sync').textContent()) === 'Never', 'a fresh integration shows Never');
  // A marker that a page reload would wipe: later steps prove that the card
  // refreshed by itself.
  await page.evaluate(() => { window.__noReload = 'still here'; });
  const t0 = Date.now();
  await c.locator('button.sync').click();
  await c.locator('.spinner').waitFor({ state: 'visible', timeout: 1000 });
  const spinnerMs = Date.now() - t0;
  assert(spinnerMs <= 1000, `spinner after ${spinnerMs} ms`);
  assert(await c.locator('button.sync').isDisabled(), 'the button is disabled while a job is queued');
  const state = await c.getAttribute('data-state');
  assert(['queued', 'running'].includes(state), `card state ${state}`);
  // The job really is queued (or already running) in the pipeline.
  const job = await until(async () => {
    const r = await api('GET', `/api/v1/orgs/${orgA}/integrations/cornerstone/jobs?limit=1`, FIX.tokens.adminA);
    const j = r.body.items[0];
    return j && ['QUEUED', 'RUNNING'].includes(j.state) ? j : null;
  }, 10000, 'the job to be QUEUED or RUNNING');
  assert(job.trigger === 'MANUAL' && job.requested_by.role === 'ORG_ADMIN', JSON.stringify(job));
  flow.jobId = job.job_id;
  await shot(page, '01-click-sync-now-spinner');
  console.log(`  spinner visible ${spinnerMs} ms after the click; job ${job.job_id} ${job.state}`);
}

async function test_running_shows_processed_count_rising_and_estimate() {
  const page = flow.page;
  assert(page, 'needs the previous test');
  const c = card(page, 'CORNERSTONE');
  await until(async () => (await c.getAttribute('data-state')) === 'running', 20000, 'running state');
  const processed = async () => {
    const text = await c.locator('.progress-text').textContent();
    const m = text.match(/^([\d,\s]+) of ([\d,\s]+) records processed/);
    return m ? { n: Number(m[1].replace(/\D/g, '')), total: Number(m[2].replace(/\D/g, '')), text } : null;
  };
  const first = await until(async () => {
    const p = await processed();
    return p && p.n > 0 ? p : null;
  }, 20000, 'a processed count');
  const later = await until(async () => {
    const p = await processed();
    return p && p.n > first.n ? p : null;
  }, 20000, 'the processed count to rise');
  assert(later.total === 3000, `total ${later.total}`);
  // An estimated completion: percent and an ETA.
  const withEta = await until(async () => {
    const text = await c.locator('.progress-text').textContent();
    return /\d+% done/.test(text) && /estimated completion (in|now)/.test(text) ? text : null;
  }, 20000, 'percent and ETA');
  const value = await c.locator('progress').evaluate((b) => b.value);
  assert(value > 0 && value <= 100, `progress value ${value}`);
  assert(await c.locator('.spinner').isVisible(), 'spinner while running');
  const live = await c.locator('[role="status"][aria-live="polite"]').first().textContent();
  assert(/Syncing/.test(live), `aria-live text: ${live}`);
  await shot(page, '02-running-progress-eta');
  console.log(`  processed ${first.n} -> ${later.n} of ${later.total}; "${withEta}"`);
}

async function test_completion_refreshes_last_sync_and_totals_without_reload() {
  const page = flow.page;
  assert(page, 'needs the previous test');
  const c = card(page, 'CORNERSTONE');
  await until(async () => (await c.getAttribute('data-state')) === 'succeeded', 60000, 'succeeded');
  const status = (await api('GET', `/api/v1/orgs/${FIX.orgs.orgA}/integrations/cornerstone/sync`, FIX.tokens.adminA)).body;
  assert(status.last_job_id === flow.jobId, `last job ${status.last_job_id}`);
  const expectLast = new Intl.DateTimeFormat('en-GB', { dateStyle: 'medium', timeStyle: 'short', timeZone: TZ })
    .format(new Date(status.last_sync_at));
  const last = await c.locator('.last-sync').textContent();
  assert(last === expectLast, `last sync "${last}", expected "${expectLast}" (local time)`);
  assert((await c.locator('.records-synced').textContent()) === '3,000', 'records synced');
  assert((await c.locator('.affected').textContent()) === '3,000 / 0 / 0', 'created/updated/deactivated');
  assert((await c.locator('.error-count').textContent()) === '0', 'error count');
  assert(!(await c.locator('.spinner').isVisible()), 'spinner gone');
  assert(await page.evaluate(() => window.__noReload) === 'still here', 'the page was reloaded');
  await shot(page, '03-completed-last-sync-totals');
}

async function test_second_click_within_5_minutes_shows_rate_limit_with_next_time() {
  const page = flow.page;
  assert(page, 'needs the previous test');
  const c = card(page, 'CORNERSTONE');
  const btn = c.locator('button.sync');
  assert(await btn.isEnabled(), 'button enabled after completion');
  await btn.click();
  await until(async () => (await c.getAttribute('data-state')) === 'rate-limited', 5000, 'rate-limited state');
  const status = (await api('GET', `/api/v1/orgs/${FIX.orgs.orgA}/integrations/cornerstone/sync`, FIX.tokens.adminA)).body;
  const next = Date.parse(status.next_manual_allowed_at);
  assert(next > Date.now() + 200000, `next allowed ${status.next_manual_allowed_at}`);
  const text = await c.locator('.notice').textContent();
  const when = clockIn(TZ, next);
  assert(text.includes(`The next manual sync is available at ${when} (in `), `notice "${text}", expected time ${when}`);
  const m = text.match(/\(in (\d+):(\d\d)\)/);
  assert(m && Number(m[1]) * 60 + Number(m[2]) > 200, `countdown in "${text}"`);
  assert(await btn.isDisabled(), 'button disabled while rate-limited');
  // The countdown is live.
  await page.waitForTimeout(2100);
  const m2 = (await c.locator('.notice').textContent()).match(/\(in (\d+):(\d\d)\)/);
  assert(m2 && Number(m2[1]) * 60 + Number(m2[2]) < Number(m[1]) * 60 + Number(m[2]), 'countdown did not move');
  await shot(page, '04-second-click-rate-limited');
  console.log(`  "${text}"`);
}

// ---------------------------------------------------------------------------

async function test_sync_with_record_errors_shows_error_count_and_link() {
  const { orgB } = FIX.orgs;
  const page = await openWidget(orgB, FIX.tokens.adminB, { name: 'errors' });
  flow.errorsPage = page;
  const c = card(page, 'CORNERSTONE');
  await c.locator('button.sync').click();
  await until(async () => (await c.getAttribute('data-state')) === 'partial', 90000, 'partial');
  assert((await c.locator('.badge').textContent()) === 'Completed with errors', 'badge');
  assert((await c.locator('.error-count').textContent()) === '8', 'error count');
  assert((await c.locator('.warning-count').textContent()) === '(8 warnings)', 'warning count');
  // ... next to the records that did sync.
  assert((await c.locator('.records-synced').textContent()) === '394', 'records synced');
  assert((await c.locator('.affected').textContent()) === '394 / 0 / 0', 'affected');
  const link = c.locator('a.errors-link');
  assert(await link.isVisible(), 'error details link');
  assert((await link.textContent()) === 'View error details', 'link text');
  await shot(page, '05-partial-error-count-and-link');
}

async function test_error_link_lists_the_errors_paged() {
  const page = flow.errorsPage;
  assert(page, 'needs the previous test');
  const c = card(page, 'CORNERSTONE');
  await c.locator('a.errors-link').click();
  const rows = c.locator('.errors-table tbody tr');
  await until(async () => (await rows.count()) === 10, 10000, 'the first page of 10');
  assert(await c.locator('button.more').isVisible(), 'Show more');
  await c.locator('button.more').click();
  await until(async () => (await rows.count()) === 16, 10000, 'all 16 issues');
  assert(!(await c.locator('button.more').isVisible()), 'no more pages');
  const table = await c.locator('.errors-table tbody').evaluate((tb) => [...tb.rows].map((r) =>
    [...r.cells].map((td) => td.textContent)));
  const errors = table.filter((r) => r[0] === 'Error');
  assert(errors.length === 8, `errors listed: ${errors.length}`);
  const codes = errors.map((r) => r[1]).sort();
  assert(JSON.stringify(codes) === JSON.stringify(['DUPLICATE_ID', 'INVALID_STATUS', 'MALFORMED', 'MISSING_FIELD',
    'MISSING_FIELD', 'MISSING_FIELD', 'MISSING_ID', 'MISSING_ID']), `codes ${codes}`);
  const rec160 = table.find((r) => r[3] === 'cs-235560');
  assert(rec160 && rec160[1] === 'MISSING_FIELD' && rec160[2] === 'member_number' && rec160[5] === '160',
    `row of record 160: ${rec160}`);
  const headers = await c.locator('.errors-table thead th').allTextContents();
  assert(headers.join('|') === 'Type|Code|Field|External ID|Message|Record #', `headers ${headers}`);
  await shot(page, '06-error-details-list');
}

async function test_member_markup_is_shown_as_text_and_not_executed() {
  // The sample's record 160 carries `<img src=x onerror=alert(1)>` as a
  // name; org C's data adds markup as external ids and as the display name.
  const errorsPage = flow.errorsPage;
  assert(errorsPage, 'needs the errors test');
  const { orgC } = FIX.orgs;
  const page = await openWidget(orgC, FIX.tokens.adminC, { name: 'xss' });
  const c = card(page, 'CORNERSTONE');
  await c.locator('button.sync').waitFor();
  const title = await c.locator('.title').textContent();
  assert(title === FIX.markupName, `title "${title}"`);
  await c.locator('button.sync').click();
  await until(async () => (await c.getAttribute('data-state')) === 'partial', 90000, 'partial');
  await c.locator('a.errors-link').click();
  const ids = c.locator('.errors-table td.col-external-id');
  await until(async () => (await ids.count()) > 0, 10000, 'error rows');
  while (await c.locator('button.more').isVisible()) {
    const n = await ids.count();
    await c.locator('button.more').click();
    await until(async () => (await ids.count()) > n, 10000, 'next page');
  }
  const shown = await ids.allTextContents();
  for (const m of FIX.markupIds) assert(shown.includes(m), `external id ${m} not shown as text: ${shown}`);
  await page.waitForTimeout(500); // give any injected handler a chance to run
  for (const p of [page, errorsPage]) {
    const injected = await p.evaluate(() => {
      const w = document.querySelector('member-sync-widget');
      return {
        xss: window.__xss ?? null,
        imgs: w.shadowRoot.querySelectorAll('img').length + document.querySelectorAll('img').length,
        scripts: w.shadowRoot.querySelectorAll('script').length,
      };
    });
    assert(injected.xss === null && injected.imgs === 0 && injected.scripts === 0,
      `markup was injected on ${p.__name}: ${JSON.stringify(injected)}`);
    assert(p.__dialogs.length === 0, `a dialog opened: ${p.__dialogs}`);
  }
  await shot(page, '07-markup-shown-as-text');
}

async function test_org_admin_sees_no_other_org_forbidden_state() {
  // admin A looks at org D: 403 from the api, shown as forbidden, no button.
  const { orgD } = FIX.orgs;
  const page = await openWidget(orgD, FIX.tokens.adminA, { name: 'forbidden' });
  const msg = page.locator('member-sync-widget .message');
  await msg.waitFor({ state: 'visible', timeout: 10000 });
  assert((await msg.textContent()) === 'You do not have access to member sync for this organization.', 'message');
  assert((await page.locator('member-sync-widget .msw').getAttribute('data-state')) === 'forbidden', 'state');
  assert((await page.locator('member-sync-widget section.card').count()) === 0, 'no cards');
  assert((await page.locator('member-sync-widget button').count()) === 0, 'no button');
  const r = await api('POST', `/api/v1/orgs/${orgD}/integrations/cornerstone/sync`, FIX.tokens.adminA);
  assert(r.status === 403, `trigger by another org's admin: ${r.status}`);
  await shot(page, '08-org-admin-other-org-forbidden');
}

async function test_global_admin_can_trigger_any_org_with_the_keyboard() {
  const { orgD } = FIX.orgs;
  const page = await openWidget(orgD, FIX.tokens.global, { name: 'global' });
  const c = card(page, 'CORNERSTONE');
  const btn = c.locator('button.sync');
  await btn.waitFor({ state: 'visible' });
  // Keyboard only: the button is reachable with Tab and starts on Enter.
  await btn.focus();
  assert(await btn.evaluate((b) => b.getRootNode().activeElement === b), 'button focusable');
  await page.keyboard.press('Enter');
  await c.locator('.spinner').waitFor({ state: 'visible', timeout: 1000 });
  await until(async () => ['succeeded', 'partial'].includes(await c.getAttribute('data-state')), 90000, 'done');
  const job = (await api('GET', `/api/v1/orgs/${orgD}/integrations/cornerstone/jobs?limit=1`, FIX.tokens.global)).body.items[0];
  assert(job.requested_by.role === 'GLOBAL_ADMIN' && job.requested_by.org_id === null, JSON.stringify(job.requested_by));
  await shot(page, '09-global-admin-any-org');
}

async function test_polling_fallback_and_norwegian_text() {
  // The stream is blocked (a proxy that cannot stream): the card falls back
  // to polling every 2 s and still follows the job.  In Norwegian.
  const { orgA } = FIX.orgs;
  const page = await ctx.newPage();
  pages.push(page);
  page.__name = 'poll';
  page.__dialogs = [];
  await page.route('**/sync/stream**', (route) => route.abort());
  const q = new URLSearchParams({ org: orgA, token: FIX.tokens.adminA, lang: 'nb' });
  await page.goto(`${BASE}/widget/?${q}`);
  const c = card(page, 'CONSIO');
  await until(async () => (await c.getAttribute('data-transport')) === 'poll', 15000, 'polling fallback');
  const btn = c.locator('button.sync');
  assert((await btn.textContent()) === 'Synkroniser nå', `button "${await btn.textContent()}"`);
  await btn.click();
  await c.locator('.spinner').waitFor({ state: 'visible', timeout: 1000 });
  await until(async () => (await c.getAttribute('data-state')) === 'partial', 90000, 'partial via polling');
  assert((await c.locator('.badge').textContent()) === 'Fullført med feil', 'nb badge');
  assert((await c.locator('.records-synced').textContent()) === '294', 'records synced');
  const status = (await api('GET', `/api/v1/orgs/${orgA}/integrations/consio/sync`, FIX.tokens.adminA)).body;
  const expectLast = new Intl.DateTimeFormat('nb-NO', { dateStyle: 'medium', timeStyle: 'short', timeZone: TZ })
    .format(new Date(status.last_sync_at));
  assert((await c.locator('.last-sync').textContent()) === expectLast, 'nb date in local time');
  assert((await c.locator('a.errors-link').textContent()) === 'Vis feildetaljer', 'nb link');
  // The cornerstone card on the same page shows the earlier sync.
  const cs = card(page, 'CORNERSTONE');
  assert((await cs.locator('.records-synced').textContent()).replace(/\s/g, '') === '3000', 'nb number');
  await shot(page, '10-polling-fallback-norwegian');
}

// ---------------------------------------------------------------------------

const TESTS = [
  test_click_sync_now_queues_job_and_shows_spinner_within_1s,
  test_running_shows_processed_count_rising_and_estimate,
  test_completion_refreshes_last_sync_and_totals_without_reload,
  test_second_click_within_5_minutes_shows_rate_limit_with_next_time,
  test_sync_with_record_errors_shows_error_count_and_link,
  test_error_link_lists_the_errors_paged,
  test_member_markup_is_shown_as_text_and_not_executed,
  test_org_admin_sees_no_other_org_forbidden_state,
  test_global_admin_can_trigger_any_org_with_the_keyboard,
  test_polling_fallback_and_norwegian_text,
];

async function main() {
  const only = process.argv.slice(2);
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'msw-chromium-'));
  let passed = 0;
  let failed = 0;
  try {
    ctx = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      timezoneId: TZ,
      locale: 'en-GB',
      viewport: { width: 1000, height: 720 },
    });
    for (const t of TESTS) {
      if (only.length && !only.includes(t.name)) continue;
      const t0 = Date.now();
      try {
        await t();
        passed++;
        console.log(`PASS ${t.name} (${((Date.now() - t0) / 1000).toFixed(1)}s)`);
      } catch (e) {
        failed++;
        const last = pages[pages.length - 1];
        if (last && !last.isClosed()) {
          await last.screenshot({ path: path.join(SHOTS, `FAIL-${t.name}.png`), fullPage: true }).catch(() => {});
        }
        const errs = pages.flatMap((p) => p.__errors || []);
        console.log(`FAIL ${t.name}: ${String(e.message || e).replace(/\s+/g, ' ').slice(0, 600)}`);
        if (errs.length) console.log(`  page errors: ${errs.join(' | ').slice(0, 600)}`);
      }
    }
  } catch (e) {
    failed++;
    console.log(`FAIL browser: ${String(e.message || e).replace(/\s+/g, ' ').slice(0, 600)}`);
  } finally {
    if (ctx) await ctx.close().catch(() => {});
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed || passed === 0 ? 1 : 0);
}

main();
