// conveyor's reviewer inbox (docs/tasks.md): the queue (#/) and a task page
// (#/task/ID) over the inbox API (/v1/tasks). No framework, no external
// resources. Who you are is kept in localStorage (or ?as=NAME) and sent as
// X-Conveyor-User until the server authenticates its callers.
'use strict';

const POLL_MS = 5000;
const $ = (sel) => document.querySelector(sel);
let me = '';
let queue = [];        // the tasks of the last queue load
let selected = 0;      // the queue row the keys move
let current = null;    // the task shown
let mine = false;      // the current task is claimed by me
let pollTimer = null;

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k);
  return e;
}

async function api(method, path, body) {
  const headers = { 'Accept': 'application/json' };
  if (me) headers['X-Conveyor-User'] = me;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  let j = null;
  try { j = await r.json(); } catch (e) { j = null; }
  return { status: r.status, body: j };
}

function ago(ms) {
  const s = Math.round(Math.abs(ms) / 1000);
  if (s < 60) return s + ' s';
  if (s < 3600) return Math.round(s / 60) + ' min';
  if (s < 86400) return Math.round(s / 3600) + ' h';
  return Math.round(s / 86400) + ' d';
}

function dueText(due) {
  if (!due) return { text: '—', late: false };
  const d = Date.parse(due) - Date.now();
  return d < 0 ? { text: 'overdue ' + ago(d), late: true } : { text: 'in ' + ago(d), late: false };
}

let noticeAt = 0;
function notice(text) {
  noticeAt = Date.now();
  const n = $('#notice');
  n.textContent = text;
  n.hidden = !text;
}

// ---- the queue --------------------------------------------------------------

async function loadQueue() {
  const items = [];
  for (const st of ['escalated', 'open', 'claimed']) {
    const r = await api('GET', '/v1/tasks?limit=200&status=' + st);
    if (r.status === 200) items.push(...r.body.items);
  }
  // the server's order within a status: priority, then due time
  items.sort((a, b) => (b.priority - a.priority) ||
    ((a.due ? Date.parse(a.due) : Infinity) - (b.due ? Date.parse(b.due) : Infinity)) ||
    (Date.parse(a.openedAt) - Date.parse(b.openedAt)));
  queue = items;
  renderQueue();
}

function renderQueue() {
  const body = $('#queue tbody');
  body.replaceChildren();
  queue.forEach((t, i) => {
    const due = dueText(t.due);
    const st = t.status === 'claimed' ? 'claimed by ' + t.claimedBy : t.status;
    const tr = el('tr', { 'data-id': t.id },
      el('td', { class: 'title', text: t.title }),
      el('td', { text: String(t.priority) }),
      el('td', { text: t.assignee || t.role || 'anyone' }),
      el('td', { class: 'age', text: ago(Date.now() - Date.parse(t.openedAt)) }),
      el('td', { class: 'due' + (due.late ? ' overdue' : ''), text: due.text }),
      el('td', {}, el('span', { class: 'status ' + t.status, text: st })));
    if (i === selected) tr.classList.add('selected');
    tr.addEventListener('click', () => { location.hash = '#/task/' + encodeURIComponent(t.id); });
    body.append(tr);
  });
  $('#count').textContent = '(' + queue.length + ')';
  $('#empty').hidden = queue.length > 0;
}

// ---- a task -----------------------------------------------------------------

function fieldInput(f) {
  const v = f.value;
  const id = 'f-' + f.name;
  switch (f.type) {
    case 'longtext': { const t = el('textarea', { id, rows: '4' }); t.value = v == null ? '' : v; return t; }
    case 'number': { const i = el('input', { id, type: 'number', step: 'any' }); i.value = v == null ? '' : v; return i; }
    case 'date': { const i = el('input', { id, type: 'date' }); i.value = v == null ? '' : v; return i; }
    case 'boolean': { const i = el('input', { id, type: 'checkbox' }); i.checked = v === true; return i; }
    case 'enum': {
      const s = el('select', { id }, el('option', { value: '', text: '—' }));
      for (const o of f.options || []) {
        const val = (o && typeof o === 'object') ? o.value : o;
        const label = (o && typeof o === 'object' && o.label) ? o.label : String(val);
        s.append(el('option', { value: JSON.stringify(val), text: label }));
      }
      s.value = v == null ? '' : JSON.stringify(v);
      return s;
    }
    case 'money': {
      const a = el('input', { id, type: 'number', step: 'any', placeholder: 'amount' });
      const c = el('input', { id: id + '-currency', type: 'text', placeholder: 'EUR', maxlength: '3' });
      a.value = v && v.amount != null ? v.amount : '';
      c.value = v && v.currency ? v.currency : '';
      return el('span', { class: 'money' }, a, c);
    }
    default: { const i = el('input', { id, type: 'text' }); i.value = v == null ? '' : v; return i; }
  }
}

function fieldValue(f) {
  const e = document.getElementById('f-' + f.name);
  switch (f.type) {
    case 'boolean': return e.checked;
    case 'number': return e.value === '' ? null : Number(e.value);
    case 'enum': return e.value === '' ? null : JSON.parse(e.value);
    case 'money': {
      const c = document.getElementById('f-' + f.name + '-currency').value.trim();
      if (e.value === '' && !c) return null;
      return { amount: e.value === '' ? null : Number(e.value), currency: c.toUpperCase() };
    }
    default: return e.value === '' ? null : e.value;
  }
}

function showConflict(text) {
  const c = $('#conflict');
  c.textContent = text || '';
  c.hidden = !text;
  for (const b of document.querySelectorAll('#decisions button')) b.disabled = !!text;
}

function claimMessage(t) {
  return 'Claimed by ' + t.claimedBy + ' (until ' + new Date(t.claimExpiresAt).toLocaleTimeString() +
    '): you cannot decide this task now.';
}

function renderTask(t) {
  current = t;
  $('#task-title').textContent = t.title;
  const due = dueText(t.due);
  $('#task-meta').textContent = [
    t.instance ? 'instance ' + t.instance : 'standalone task',
    'opened ' + ago(Date.now() - Date.parse(t.openedAt)) + ' ago',
    'due ' + due.text, 'priority ' + t.priority, t.role ? 'role ' + t.role : '', t.assignee ? 'for ' + t.assignee : '',
  ].filter(Boolean).join(' · ');
  $('#task-description').textContent = t.description || '';
  $('#task-data').textContent = JSON.stringify(t.data, null, 2);
  const preds = $('#predictions');
  preds.replaceChildren();
  const fields = (t.form && t.form.fields) || [];
  for (const f of fields.filter((f) => f.model)) {
    const conf = typeof f.confidence === 'number' ? f.confidence : null;
    const li = el('li', { class: 'prediction' },
      el('strong', { text: (f.label || f.name) + ': ' }), JSON.stringify(f.predicted) + ' ',
      el('span', { class: 'muted', text: 'by ' + f.model + ' ' }));
    if (conf !== null) li.append(el('span', { class: 'conf' + (conf < 0.7 ? ' low' : ''), text: Math.round(conf * 100) + '% confident' }));
    preds.append(li);
  }
  if (!preds.children.length) preds.append(el('li', { class: 'muted', text: 'none' }));
  const box = $('#fields');
  box.replaceChildren();
  for (const f of fields) {
    const label = el('label', { class: 'field', 'data-field': f.name }, (f.label || f.name) + (f.required ? ' *' : ''), fieldInput(f));
    if (f.model) label.append(el('span', { class: 'hint', text: 'prefilled by ' + f.model }));
    box.append(label);
  }
  $('#comment').value = '';
  const dec = $('#decisions');
  dec.replaceChildren();
  for (const d of (t.form && t.form.decisions) || ['approve', 'reject']) {
    const b = el('button', { type: 'button', class: d, 'data-decision': d, text: d[0].toUpperCase() + d.slice(1) });
    b.addEventListener('click', () => complete(d));
    dec.append(b);
  }
  $('#form-errors').hidden = true;
  const ended = t.status === 'completed' || t.status === 'cancelled';
  if (ended) showConflict('This task is ' + t.status + (t.completion ? ' by ' + t.completion.reviewer : '') + '.');
  else if (t.status === 'claimed' && t.claimedBy !== me) showConflict(claimMessage(t));
  else showConflict('');
}

async function openTask(id) {
  $('#queue-view').hidden = true;
  $('#task-view').hidden = false;
  mine = false;
  let r = await api('GET', '/v1/tasks/' + encodeURIComponent(id));
  if (r.status !== 200) { showConflict((r.body && r.body.detail) || 'no such task'); return; }
  const t = r.body;
  renderTask(t);
  if (t.status === 'open' || t.status === 'escalated' || (t.status === 'claimed' && t.claimedBy === me)) {
    if (!me) { showConflict('Say who you are (top right) to claim and decide this task.'); return; }
    r = await api('POST', '/v1/tasks/' + encodeURIComponent(id) + '/claim', {});
    if (r.status === 200) { mine = true; current = r.body; }
    else if (r.status === 409) await recheck();
    else showConflict((r.body && r.body.detail) || 'cannot claim this task');
  }
  pollTimer = setInterval(recheck, POLL_MS);
}

// Someone else may have claimed or completed the task meanwhile.
async function recheck() {
  if (!current) return true;
  const r = await api('GET', '/v1/tasks/' + encodeURIComponent(current.id));
  if (r.status !== 200) return false;
  const t = r.body;
  if (t.status === 'claimed' && t.claimedBy !== me) { mine = false; showConflict(claimMessage(t)); return false; }
  if (t.status === 'completed' || t.status === 'cancelled') {
    showConflict('This task is ' + t.status + (t.completion ? ' by ' + t.completion.reviewer : '') + '.');
    return false;
  }
  return true;
}

async function complete(decision) {
  if (!current || !(await recheck())) return;
  const fields = {};
  for (const f of (current.form && current.form.fields) || []) fields[f.name] = fieldValue(f);
  const comment = $('#comment').value.trim();
  const r = await api('POST', '/v1/tasks/' + encodeURIComponent(current.id) + '/complete',
    { decision, fields, comment: comment || null });
  for (const l of document.querySelectorAll('.field')) {
    l.classList.remove('invalid');
    const e = l.querySelector('.error');
    if (e) e.remove();
  }
  if (r.status === 200) {
    notice('Done: ' + current.title + ' — ' + decision + '.');
    await next();
    return;
  }
  if (r.status === 409) { showConflict(r.body.detail); return; }
  const box = $('#form-errors');
  box.hidden = false;
  box.textContent = (r.body && r.body.detail) || 'the server refused the decision';
  for (const e of (r.body && r.body.errors) || []) {
    const l = document.querySelector('.field[data-field="' + CSS.escape(e.field) + '"]');
    if (l) { l.classList.add('invalid'); l.append(el('span', { class: 'error', text: e.message })); }
  }
}

// The next task of the queue that nobody else holds.
async function next() {
  await loadQueue();
  const t = queue.find((q) => (!current || q.id !== current.id) && (q.status !== 'claimed' || q.claimedBy === me));
  location.hash = t ? '#/task/' + encodeURIComponent(t.id) : '#/';
}

// ---- routing and keys --------------------------------------------------------

async function route() {
  if (Date.now() - noticeAt > 3000) notice(''); // a note stays for the page that follows a decision only
  clearInterval(pollTimer);
  pollTimer = null;
  current = null;
  const m = location.hash.match(/^#\/task\/(.+)$/);
  if (m) { await openTask(decodeURIComponent(m[1])); return; }
  $('#task-view').hidden = true;
  $('#queue-view').hidden = false;
  await loadQueue();
  pollTimer = setInterval(loadQueue, POLL_MS);
}

function typing(e) {
  const t = e.target;
  return t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.tagName === 'SELECT' || t.isContentEditable);
}

document.addEventListener('keydown', (e) => {
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  if (e.key === 'Escape') { if (typing(e)) e.target.blur(); location.hash = '#/'; return; }
  if (typing(e)) return;
  const onTask = !$('#task-view').hidden;
  if (onTask) {
    const byKey = { a: 'approve', r: 'reject' };
    if (byKey[e.key]) {
      const b = document.querySelector('#decisions button[data-decision="' + byKey[e.key] + '"]');
      if (b && !b.disabled) { e.preventDefault(); complete(byKey[e.key]); }
    } else if (e.key === 'j') { e.preventDefault(); next(); }
    return;
  }
  if (e.key === 'j' || e.key === 'k') {
    selected = Math.max(0, Math.min(queue.length - 1, selected + (e.key === 'j' ? 1 : -1)));
    renderQueue();
  } else if (e.key === 'Enter' && queue[selected]) {
    location.hash = '#/task/' + encodeURIComponent(queue[selected].id);
  }
});

window.addEventListener('hashchange', route);
window.addEventListener('DOMContentLoaded', () => {
  const q = new URLSearchParams(location.search).get('as');
  me = q || localStorage.getItem('conveyor.user') || '';
  if (q) localStorage.setItem('conveyor.user', q);
  const input = $('#me');
  input.value = me;
  input.addEventListener('change', () => { me = input.value.trim(); localStorage.setItem('conveyor.user', me); route(); });
  route();
});
