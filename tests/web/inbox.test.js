// tests/web/inbox.test.js — the reviewer's web inbox end to end in headless
// Chromium (Debian's /usr/bin/chromium, driven by playwright-core; no browser
// download). Run by test_inbox.sh, which starts a real `conveyor serve` and
// passes its URL (SERVER) and the output directory for screenshots (OUT).
// Prints `N passed, N failed`.
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const { chromium } = require('playwright-core');

const SERVER = process.env.SERVER;
const OUT = process.env.OUT;
let passed = 0;
let failed = 0;

function check(name, cond, extra) {
  if (cond) { passed++; console.log('ok   ' + name); }
  else { failed++; console.log('FAIL ' + name + (extra !== undefined ? ': ' + extra : '')); }
}

async function api(method, p, body, user) {
  const headers = { 'Content-Type': 'application/json' };
  if (user) headers['X-Conveyor-User'] = user;
  const r = await fetch(SERVER + p, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  return { status: r.status, body: await r.json().catch(() => null) };
}

const soon = (h) => new Date(Date.now() + h * 3600e3).toISOString();

async function main() {
  // ---- tasks raised through the API
  const form = {
    decisions: ['approve', 'reject'],
    fields: [
      { name: 'label', label: 'Document type', type: 'enum', options: ['invoice', 'receipt', 'other'], required: true,
        value: 'receipt', model: 'doctype@3', predicted: 'receipt', confidence: 0.62 },
      { name: 'amount', type: 'money', value: { amount: 42.5, currency: 'EUR' } },
      { name: 'note', type: 'longtext' },
    ],
  };
  const raised = [
    { id: 'w-urgent', title: 'Check invoice 1001', priority: 5, role: 'clerks', due: soon(2),
      description: 'Scanned on arrival; the classifier was unsure.', data: { text: 'INVOICE 1001 total 42.50 EUR' }, form },
    { id: 'w-later', title: 'Check receipt 77', priority: 1, role: 'clerks', due: soon(48), data: { text: 'Receipt 77' }, form },
    { id: 'w-taken', title: 'Check contract 9', priority: 1, role: 'clerks', due: soon(24), data: { text: 'Contract' }, form },
  ];
  for (const t of raised) {
    const r = await api('POST', '/v1/tasks', t);
    check('raise ' + t.id + ' through POST /v1/tasks', r.status === 201, r.status);
  }
  const claim = await api('POST', '/v1/tasks/w-taken/claim', {}, 'bob');
  check('bob claims w-taken through the API', claim.status === 200, claim.status);

  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'conveyor-chromium-'));
  // a fresh profile (--user-data-dir: playwright passes it for a persistent context)
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1200, height: 800 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage();
    const problems = [];
    // the browser logs every 4xx answer; 409 and 422 are answers the page handles
    page.on('console', (m) => {
      if (m.type() === 'error' && !/status of (409|422)/.test(m.text())) problems.push(m.text());
    });
    page.on('pageerror', (e) => problems.push(String(e)));
    page.on('request', (q) => { if (!q.url().startsWith(SERVER)) problems.push('external request: ' + q.url()); });

    // ---- the queue
    await page.goto(SERVER + '/inbox/?as=alice');
    await page.waitForSelector('#queue tbody tr');
    const rows = await page.$$eval('#queue tbody tr', (trs) => trs.map((tr) => tr.getAttribute('data-id')));
    check('the queue lists the open and claimed tasks, most urgent first',
      JSON.stringify(rows) === JSON.stringify(['w-urgent', 'w-taken', 'w-later']), JSON.stringify(rows));
    const due = await page.textContent('#queue tbody tr[data-id="w-urgent"] .due');
    check('the queue shows due times', /in 2 h|in 1\d\d min|in 2 h/.test(due), due);
    const age = await page.textContent('#queue tbody tr[data-id="w-urgent"] .age');
    check('the queue shows ages', /\d+ (s|min)/.test(age), age);
    const taken = await page.textContent('#queue tbody tr[data-id="w-taken"] .status');
    check('the queue shows who holds a claimed task', taken.includes('bob'), taken);
    await page.screenshot({ path: path.join(OUT, '1-queue.png'), fullPage: true });

    // ---- a task: data, predictions with confidence, the form prefilled; claimed on open
    await page.click('#queue tbody tr[data-id="w-urgent"]');
    await page.waitForSelector('#task-view:not([hidden]) #decisions button');
    await page.waitForFunction(() => document.querySelector('#task-title').textContent === 'Check invoice 1001');
    const data = await page.textContent('#task-data');
    check('the task page shows the data', data.includes('INVOICE 1001'), data);
    const pred = await page.textContent('#predictions');
    check('the task page shows the prediction and its confidence', pred.includes('doctype@3') && pred.includes('62%'), pred);
    const label = await page.$eval('#f-label', (s) => s.value);
    check('the form is prefilled with the model output', label === '"receipt"', label);
    const amount = await page.$eval('#f-amount', (i) => i.value);
    check('a money field is prefilled', amount === '42.5', amount);
    let t = null;
    for (let i = 0; i < 50; i++) {
      t = (await api('GET', '/v1/tasks/w-urgent')).body;
      if (t.status === 'claimed') break;
      await page.waitForTimeout(100);
    }
    check('opening the task claims it for alice', t.status === 'claimed' && t.claimedBy === 'alice', JSON.stringify(t.status));
    await page.screenshot({ path: path.join(OUT, '2-task.png'), fullPage: true });

    // ---- correct the label, then approve with the keyboard
    await page.selectOption('#f-label', '"invoice"');
    await page.click('#task-title'); // focus off the form: keys are shortcuts again
    await page.keyboard.press('a');
    for (let i = 0; i < 50; i++) {
      t = (await api('GET', '/v1/tasks/w-urgent')).body;
      if (t.status === 'completed') break;
      await page.waitForTimeout(100);
    }
    check('"a" approves the task', t.status === 'completed' && t.completion.decision === 'approve', JSON.stringify(t.completion));
    check('... with the corrected field and alice as reviewer',
      t.completion && t.completion.fields.label === 'invoice' && t.completion.reviewer === 'alice');
    // the store says completed before the page has read its own answer: wait (bounded) for the notice
    const n = await page
      .waitForFunction(() => ((document.querySelector('#notice') || {}).textContent || '').includes('approve'), null,
        { timeout: 5000 })
      .then(() => page.textContent('#notice'), () => page.textContent('#notice'));
    check('the page says it is done', (n || '').includes('approve'), n);

    // ---- "next" takes the next task nobody else holds: w-later (w-taken is bob's)
    await page.waitForFunction(() => location.hash.startsWith('#/task/'));
    await page.waitForFunction(() => document.querySelector('#task-title').textContent !== 'Check invoice 1001');
    const nextTitle = await page.textContent('#task-title');
    check('after a decision the next free task opens', nextTitle === 'Check receipt 77', nextTitle);
    await page.click('#task-title');
    await page.keyboard.press('j');
    await page.waitForTimeout(300);
    const hash = await page.evaluate(() => location.hash);
    check('"j" moves on (no other free task: back to the queue)', hash === '#/' || hash === '', hash);
    await page.screenshot({ path: path.join(OUT, '3-after-approve.png'), fullPage: true });

    // ---- a task someone else claimed: a clear message, no decision possible
    await page.goto(SERVER + '/inbox/?as=alice#/task/w-taken');
    await page.waitForSelector('#conflict:not([hidden])');
    const msg = await page.textContent('#conflict');
    check('a task claimed by bob says so', msg.includes('Claimed by bob'), msg);
    const disabled = await page.$$eval('#decisions button', (bs) => bs.every((b) => b.disabled));
    check('... and its decision buttons are disabled', disabled);
    await page.keyboard.press('a');
    await page.waitForTimeout(300);
    t = (await api('GET', '/v1/tasks/w-taken')).body;
    check('... "a" changes nothing', t.status === 'claimed' && t.claimedBy === 'bob', t.status);
    await page.screenshot({ path: path.join(OUT, '4-claimed-by-bob.png'), fullPage: true });

    // ---- claimed by someone else while the page is open: the submit re-checks
    await page.goto(SERVER + '/inbox/?as=alice#/task/w-later');
    await page.waitForFunction(() => document.querySelector('#task-title').textContent === 'Check receipt 77');
    for (let i = 0; i < 50; i++) {
      t = (await api('GET', '/v1/tasks/w-later')).body;
      if (t.claimedBy === 'alice') break;
      await page.waitForTimeout(100);
    }
    await api('POST', '/v1/tasks/w-later/release', {}, 'alice');
    const steal = await api('POST', '/v1/tasks/w-later/claim', {}, 'carol');
    check('carol claims w-later behind alice\'s back', steal.status === 200, steal.status);
    await page.click('#task-title');
    await page.keyboard.press('r');
    await page.waitForSelector('#conflict:not([hidden])');
    const msg2 = await page.textContent('#conflict');
    check('the submit finds carol\'s claim and says so', msg2.includes('Claimed by carol'), msg2);
    t = (await api('GET', '/v1/tasks/w-later')).body;
    check('... and nothing was completed', t.status === 'claimed' && t.claimedBy === 'carol', t.status);
    await page.screenshot({ path: path.join(OUT, '5-claimed-meanwhile.png'), fullPage: true });

    // ---- the form refuses: field-level messages next to the fields, nothing completed
    const r = await api('POST', '/v1/tasks', { id: 'w-form', title: 'Needs a reference', data: {},
      form: { fields: [{ name: 'ref', label: 'Reference', type: 'text', required: true }] } });
    check('raise w-form', r.status === 201, r.status);
    await page.goto(SERVER + '/inbox/?as=alice#/task/w-form');
    await page.waitForFunction(() => document.querySelector('#task-title').textContent === 'Needs a reference');
    for (let i = 0; i < 50; i++) {
      t = (await api('GET', '/v1/tasks/w-form')).body;
      if (t.claimedBy === 'alice') break;
      await page.waitForTimeout(100);
    }
    await page.click('#task-title');
    await page.keyboard.press('a');
    await page.waitForSelector('.field.invalid .error');
    const ferr = await page.textContent('.field[data-field="ref"] .error');
    check('a required field left empty is marked with the server\'s message', ferr.includes('required'), ferr);
    t = (await api('GET', '/v1/tasks/w-form')).body;
    check('... and the task is not completed', t.status === 'claimed', t.status);
    await page.screenshot({ path: path.join(OUT, '6-field-error.png'), fullPage: true });

    check('no console errors, no external requests', problems.length === 0, problems.join(' | '));
  } finally {
    await browser.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

main().catch((e) => { failed++; console.log('FAIL the test crashed: ' + (e && e.stack || e)); })
  .finally(() => { console.log(passed + ' passed, ' + failed + ' failed'); process.exit(failed ? 1 : 0); });
