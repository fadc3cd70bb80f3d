// <member-sync-widget>: the member sync status widget (DESIGN 1 and 9).
//
//   <script type="module" src="/widget/member-sync-widget.js"></script>
//   <member-sync-widget org="org-1" api-base="https://sync.example.org"
//                       token-provider="getAccessToken" lang="nb"></member-sync-widget>
//
// Attributes
//   org             organization id (required)
//   api-base        origin of the membersync api; empty = this page's origin
//   token-provider  name of a global function returning the bearer token
//                   (a string or a Promise of one); called before each request,
//                   so a host app can refresh tokens
//   lang            "en" or "nb" (default: the page's lang, else English)
//   transport       "sse" (default) or "poll" to skip Server-Sent Events
//
// One card per configured integration, live through Server-Sent Events with a
// fallback to polling every 2 s.  Dependency-free; no build step.  Every piece
// of server or member data is written with textContent, never as markup.
// State hooks for styling and tests: each card has data-integration and
// data-state (idle, queued, running, succeeded, partial, failed,
// rate-limited, forbidden, disabled) and data-transport (sse, poll).

import { STRINGS } from './i18n.js';

const ACTIVE = new Set(['QUEUED', 'RUNNING']);
const POLL_MS = 2000;
const SSE_RETRY_MS = 30000;
const SSE_MAX_ERRORS = 3;
const PENDING_TIMEOUT_MS = 60000;
const LIST_RETRY_MS = 5000;
const ERRORS_PAGE = 10;
const LIVE_PROGRESS_EVERY_MS = 10000;

let ids = 0;
const nextId = (p) => `msw-${p}-${++ids}`;

// Creates an element.  Text goes in as Text nodes; attribute values are
// set with setAttribute, so neither can turn into markup.
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === false || v === null || v === undefined) continue;
    if (k === 'text') e.textContent = v;
    else if (k === 'class') e.className = v;
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) e.append(c);
  return e;
}

// Fills {name} placeholders; the result is only ever used as text.
function fill(template, values) {
  return template.replace(/\{(\w+)\}/g, (m, k) => (k in values ? String(values[k]) : m));
}

function parseTime(iso) {
  const t = iso ? Date.parse(iso) : NaN;
  return Number.isFinite(t) ? t : null;
}

function langOf(attr) {
  const l = String(attr || document.documentElement.lang || 'en').toLowerCase();
  return /^(nb|no|nn)\b/.test(l) ? 'nb' : 'en';
}

function localeOf(lang) {
  if (lang === 'nb') return 'nb-NO';
  const nav = (navigator.languages || [navigator.language]).find((l) => /^en\b/i.test(l || ''));
  return nav || 'en-GB';
}

class Card {
  constructor(widget, status) {
    this.w = widget;
    this.integration = status.integration;
    this.slug = String(status.integration).toLowerCase();
    this.status = status;
    this.offset = 0; // server clock minus ours, for countdowns
    this.pending = null; // a trigger sent, not yet confirmed by the status
    this.refusal = null; // why the last click did not start a sync
    this.forbidden = false;
    this.es = null;
    this.sseErrors = 0;
    this.pollTimer = null;
    this.sseRetryTimer = null;
    this.transport = null;
    this.lastLive = '';
    this.lastLiveState = '';
    this.lastLiveAt = 0;
    this.errorsUrl = null;
    this.errorsCursor = null;
    this.build();
    this.update(status);
  }

  path(suffix = '') {
    const org = encodeURIComponent(this.w.org);
    return `/api/v1/orgs/${org}/integrations/${encodeURIComponent(this.slug)}/sync${suffix}`;
  }

  build() {
    const titleId = nextId('title');
    const noticeId = nextId('notice');
    this.errorsId = nextId('errors');
    this.title = el('h3', { class: 'title', id: titleId, part: 'title' });
    this.badge = el('span', { class: 'badge', part: 'badge' });
    this.spinner = el('span', { class: 'spinner', 'aria-hidden': 'true', part: 'spinner' });
    this.progressText = el('p', { class: 'progress-text' });
    this.bar = el('progress', { class: 'bar', max: '100' });
    this.progress = el('div', { class: 'progress', part: 'progress', hidden: true },
      this.spinner, el('div', { class: 'progress-body' }, this.progressText, this.bar));
    // Screen readers hear state changes at once and progress at most every
    // few seconds, instead of every page of records.
    this.live = el('p', { class: 'sr-only', role: 'status', 'aria-live': 'polite',
      'aria-atomic': 'true' });

    this.lastSyncLabel = el('dt');
    this.lastSync = el('dd', { class: 'last-sync' });
    this.recordsLabel = el('dt');
    this.records = el('dd', { class: 'records-synced' });
    this.affectedLabel = el('dt');
    this.affected = el('dd', { class: 'affected' });
    this.errorsLabel = el('dt');
    this.errorCount = el('span', { class: 'error-count' });
    this.warningCount = el('span', { class: 'warning-count' });
    this.errorsLink = el('a', { class: 'errors-link', href: `#${this.errorsId}`,
      'aria-controls': this.errorsId, 'aria-expanded': 'false', part: 'errors-link', hidden: true });
    this.errorsLink.addEventListener('click', (e) => {
      e.preventDefault();
      if (this.errorsPanel.hidden) this.openErrors(); else this.closeErrors();
    });
    this.errors = el('dd', { class: 'errors' }, this.errorCount, ' ', this.warningCount, ' ',
      this.errorsLink);
    this.facts = el('dl', { class: 'facts' },
      el('div', {}, this.lastSyncLabel, this.lastSync),
      el('div', {}, this.recordsLabel, this.records),
      el('div', {}, this.affectedLabel, this.affected),
      el('div', {}, this.errorsLabel, this.errors));

    this.noticeText = el('span', { class: 'notice-text' });
    this.countdown = el('span', { class: 'countdown', 'aria-hidden': 'true' });
    this.notice = el('p', { class: 'notice', id: noticeId, tabindex: '-1', part: 'notice',
      'aria-live': 'polite', hidden: true }, this.noticeText, ' ', this.countdown);

    this.button = el('button', { type: 'button', class: 'sync', part: 'sync-button',
      'aria-describedby': noticeId });
    this.button.addEventListener('click', () => this.trigger());

    this.errorsHeading = el('h4', { tabindex: '-1' });
    this.errorsStatus = el('p', { class: 'errors-status', role: 'status' });
    this.errorsTable = el('table', { class: 'errors-table', hidden: true });
    this.moreButton = el('button', { type: 'button', class: 'more', hidden: true });
    this.moreButton.addEventListener('click', () => this.loadErrors(false));
    this.closeButton = el('button', { type: 'button', class: 'close' });
    this.closeButton.addEventListener('click', () => { this.closeErrors(); this.errorsLink.focus(); });
    this.errorsPanel = el('div', { class: 'errors-panel', id: this.errorsId, hidden: true,
      part: 'errors-panel' }, this.errorsHeading, this.errorsStatus,
    el('div', { class: 'table-wrap' }, this.errorsTable),
    el('div', { class: 'panel-actions' }, this.moreButton, this.closeButton));

    this.root = el('section', { class: 'card', 'aria-labelledby': titleId,
      'data-integration': this.integration, part: 'card' },
    el('header', {}, this.title, this.badge),
    this.progress, this.live, this.facts, this.notice,
    el('div', { class: 'actions' }, this.button),
    this.errorsPanel);
  }

  // ---- data in ------------------------------------------------------------

  update(s) {
    if (!s || s.integration !== this.integration) return;
    this.status = s;
    const server = parseTime(s.server_time);
    if (server !== null) this.offset = server - Date.now();
    this.resolvePending(s);
    const rej = s.last_rejection;
    if (rej && rej.reason === 'RATE_LIMITED') {
      const until = parseTime(rej.next_allowed_at);
      // Another admin's (or an earlier) refused click closes the window for
      // everyone; it shows until it opens again.
      if (until !== null && until > this.now() && !this.pending) {
        this.refusal = { kind: 'rate', until };
      }
    }
    if (this.errorsUrl && s.errors_url !== this.errorsUrl && !this.errorsPanel.hidden) {
      // A newer job finished while its predecessor's errors were open.
      if (s.errors_url) this.openErrors(false); else this.closeErrors();
    }
    this.render();
  }

  resolvePending(s) {
    const p = this.pending;
    if (!p) return;
    if (s.active_job_id && s.active_job_id !== p.prevActive) {
      this.pending = null; // queued or running now
    } else if (s.last_job_id && s.last_job_id !== p.prevLast) {
      this.pending = null; // already finished
    } else if (p.requestId && s.last_rejection && s.last_rejection.request_id === p.requestId) {
      this.pending = null;
      const r = s.last_rejection;
      if (r.reason === 'RATE_LIMITED') {
        this.refusal = { kind: 'rate', until: parseTime(r.next_allowed_at) || this.now() };
      } else if (r.reason === 'ALREADY_RUNNING') {
        this.refusal = { kind: 'text', key: 'alreadyRunning' };
      } else if (r.reason === 'FORBIDDEN') {
        this.forbidden = true;
      } else if (r.reason === 'NOT_CONFIGURED') {
        this.refusal = { kind: 'text', key: 'notConfigured' };
      } else {
        this.refusal = { kind: 'rejected', message: r.message || r.reason };
      }
    }
  }

  now() {
    return Date.now() + this.offset;
  }

  // ---- rendering ----------------------------------------------------------

  displayState() {
    const s = this.status;
    if (this.forbidden) return 'FORBIDDEN';
    if (s.enabled === false) return 'DISABLED';
    if (this.pending && !ACTIVE.has(s.state)) return 'QUEUED';
    if (ACTIVE.has(s.state)) return s.state;
    if (this.rateActive()) return 'RATE_LIMITED';
    return s.state || 'IDLE';
  }

  rateActive() {
    return !!(this.refusal && this.refusal.kind === 'rate' && this.refusal.until > this.now());
  }

  render() {
    const t = this.w.t;
    const s = this.status;
    const state = this.displayState();
    const busy = state === 'QUEUED' || state === 'RUNNING';
    this.root.dataset.state = state.toLowerCase().replace('_', '-');
    this.root.setAttribute('aria-busy', busy ? 'true' : 'false');
    this.title.textContent = s.display_name || t.names[this.integration] || this.integration;
    this.badge.textContent = t.states[state] || state;

    // Progress.
    this.progress.hidden = !busy;
    let liveText = '';
    if (busy) {
      const parts = [];
      if (state === 'QUEUED') {
        parts.push(this.pending && !this.pending.requestId ? t.startingText : t.queuedText);
      } else {
        const processed = s.records_processed || 0;
        parts.push(s.total_estimate
          ? fill(t.processedOf, { processed: this.w.num(processed), total: this.w.num(s.total_estimate) })
          : fill(t.processed, { processed: this.w.num(processed) }));
        if (s.percent !== null && s.percent !== undefined) {
          parts.push(fill(t.percent, { percent: this.w.num(Math.min(100, s.percent)) }));
        }
        const eta = parseTime(s.eta_at);
        if (eta !== null) {
          parts.push(fill(t.eta, { relative: this.w.relative(eta - this.now()), time: this.w.clock(eta) }));
        } else if (s.percent === null || s.percent === undefined) {
          parts.push(t.etaUnknown);
        }
      }
      this.progressText.textContent = parts.join(' · ');
      if (state === 'RUNNING' && s.percent !== null && s.percent !== undefined) {
        this.bar.value = Math.min(100, s.percent);
      } else {
        this.bar.removeAttribute('value'); // indeterminate
      }
      this.bar.setAttribute('aria-label', t.progressLabel);
      liveText = `${this.title.textContent}: ${t.states[state]}. ${parts.join('. ')}`;
    } else {
      liveText = `${this.title.textContent}: ${t.states[state] || state}`;
    }
    this.announce(state, liveText);

    // Facts about the last finished sync.
    this.lastSyncLabel.textContent = t.lastSync;
    const last = parseTime(s.last_sync_at);
    this.lastSync.textContent = last !== null ? this.w.dateTime(last) : t.never;
    if (last !== null) this.lastSync.title = new Date(last).toISOString();
    this.recordsLabel.textContent = t.recordsSynced;
    this.records.textContent = this.w.num(s.records_synced);
    this.affectedLabel.textContent = t.affected;
    this.affected.textContent = [s.created, s.updated, s.deactivated].map((n) => this.w.num(n)).join(' / ');
    this.errorsLabel.textContent = t.errors;
    this.errorCount.textContent = this.w.num(s.error_count);
    const warnings = s.warning_count || 0;
    this.warningCount.textContent = warnings === 1 ? t.warningSuffix
      : warnings > 1 ? fill(t.warningsSuffix, { count: this.w.num(warnings) }) : '';
    const hasIssues = (s.error_count || 0) + warnings > 0 && !!s.errors_url;
    this.errorsLink.hidden = !hasIssues;
    this.errorsLink.textContent = t.viewErrors;
    if (!hasIssues && !this.errorsPanel.hidden) this.closeErrors();

    // Notice: why the button is off, or what went wrong.
    let text = '';
    let countdown = '';
    let tone = 'info';
    if (state === 'FORBIDDEN') {
      text = t.forbidden;
      tone = 'error';
    } else if (state === 'DISABLED') {
      text = t.disabled;
    } else if (this.rateActive() && !busy) {
      text = fill(t.rateLimited, { time: this.w.clock(this.refusal.until, true) });
      countdown = fill(t.countdown, { countdown: this.w.countdown(this.refusal.until - this.now()) });
      tone = 'warning';
    } else if (this.refusal && this.refusal.kind === 'text' && !busy) {
      text = t[this.refusal.key];
      tone = 'warning';
    } else if (this.refusal && this.refusal.kind === 'rejected' && !busy) {
      text = fill(t.rejected, { message: this.refusal.message });
      tone = 'warning';
    } else if (this.refusal && this.refusal.kind === 'error' && !busy) {
      text = this.refusal.message;
      tone = 'error';
    } else if (state === 'FAILED') {
      text = s.failure_reason ? fill(t.failedReason, { reason: s.failure_reason }) : t.failedNoReason;
      tone = 'error';
    }
    if (this.noticeText.textContent !== text) this.noticeText.textContent = text;
    this.countdown.textContent = countdown;
    this.notice.hidden = !text;
    this.notice.dataset.tone = tone;
    if (this.refusal && this.refusal.kind === 'rate' && !this.rateActive()) this.refusal = null;

    // The button: absent without access, disabled while it cannot work.
    this.button.textContent = t.syncNow;
    this.button.hidden = state === 'FORBIDDEN';
    const disabled = busy || state === 'DISABLED' || this.rateActive();
    if (disabled && this.button.matches(':focus')) {
      // Keyboard users keep their place: the notice explains why.
      if (text) {
        this.notice.focus();
      } else {
        this.root.setAttribute('tabindex', '-1');
        this.root.focus();
      }
    }
    this.button.disabled = disabled;
    if (this.errorsUrl) this.relabelErrors();
  }

  announce(state, text) {
    const now = Date.now();
    if (text === this.lastLive) return;
    // A state change is announced at once; progress within a state at most
    // every LIVE_PROGRESS_EVERY_MS.
    if (state === this.lastLiveState && now - this.lastLiveAt < LIVE_PROGRESS_EVERY_MS) return;
    this.lastLive = text;
    this.lastLiveState = state;
    this.lastLiveAt = now;
    this.live.textContent = text;
  }

  tick() {
    if (this.pending && Date.now() - this.pending.at > PENDING_TIMEOUT_MS) {
      this.pending = null;
      this.refusal = { kind: 'error', message: this.w.t.notConfirmed };
    }
    const s = this.status;
    if (this.refusal || this.pending || (s && s.state === 'RUNNING')) this.render();
  }

  // ---- the trigger --------------------------------------------------------

  async trigger() {
    if (this.button.disabled || this.pending) return;
    const s = this.status;
    this.pending = { at: Date.now(), prevActive: s.active_job_id, prevLast: s.last_job_id, requestId: null };
    this.refusal = null;
    this.render(); // the spinner shows at once, before the api answers
    let r;
    let body = {};
    try {
      r = await this.w.request(this.path(), { method: 'POST' });
      body = await r.json().catch(() => ({}));
    } catch (e) {
      this.pending = null;
      this.refusal = { kind: 'error', message: this.w.t.triggerFailed };
      this.render();
      return;
    }
    if (r.status === 202) {
      if (this.pending) this.pending.requestId = body.request_id || 'unknown';
      if (this.transport === 'poll') this.poll();
    } else {
      this.pending = null;
      if (r.status === 429) {
        let until = parseTime(body.next_allowed_at);
        if (until === null) {
          const secs = Number(r.headers.get('Retry-After')) || 60;
          until = this.now() + secs * 1000;
        }
        this.refusal = { kind: 'rate', until };
      } else if (r.status === 403) {
        this.forbidden = true;
      } else if (r.status === 404) {
        this.refusal = { kind: 'text', key: 'notConfigured' };
      } else if (r.status === 401) {
        this.refusal = { kind: 'text', key: 'unauthorized' };
      } else {
        this.refusal = { kind: 'error', message: this.w.t.triggerFailed };
      }
    }
    this.render();
  }

  // ---- live updates -------------------------------------------------------

  start() {
    if (this.w.getAttribute('transport') === 'poll' || typeof EventSource === 'undefined') {
      this.startPolling();
    } else {
      this.openSse();
    }
  }

  stop() {
    if (this.es) this.es.close();
    this.es = null;
    clearInterval(this.pollTimer);
    clearTimeout(this.sseRetryTimer);
    this.pollTimer = null;
    this.stopped = true;
  }

  setTransport(kind) {
    this.transport = kind;
    this.root.dataset.transport = kind;
  }

  async openSse() {
    if (this.stopped) return;
    let token = null;
    try {
      token = await this.w.token();
    } catch (e) {
      token = null;
    }
    if (this.stopped) return;
    const url = this.w.url(this.path('/stream')) + (token ? `?access_token=${encodeURIComponent(token)}` : '');
    const es = new EventSource(url);
    this.es = es;
    this.sseErrors = 0;
    es.addEventListener('status', (e) => {
      this.sseErrors = 0;
      if (this.transport !== 'sse') {
        clearInterval(this.pollTimer);
        this.pollTimer = null;
        this.setTransport('sse');
      }
      try {
        this.update(JSON.parse(e.data));
      } catch (err) {
        // A malformed event is skipped; the next one carries the full state.
      }
    });
    es.addEventListener('gone', () => {
      es.close();
      this.refusal = { kind: 'text', key: 'notConfigured' };
      this.render();
    });
    es.onerror = () => {
      this.sseErrors += 1;
      // CLOSED: the api refused the stream (expired token, say); the browser
      // will not retry.  Repeated errors while reconnecting: a proxy that
      // cannot stream.  Either way polling takes over, and the stream is
      // tried again later with a fresh token.
      if (es.readyState === EventSource.CLOSED || this.sseErrors >= SSE_MAX_ERRORS) {
        es.close();
        if (this.es === es) this.es = null;
        this.startPolling();
        clearTimeout(this.sseRetryTimer);
        this.sseRetryTimer = setTimeout(() => this.openSse(), SSE_RETRY_MS);
      }
    };
  }

  startPolling() {
    if (this.stopped || this.pollTimer) return;
    this.setTransport('poll');
    this.poll();
    this.pollTimer = setInterval(() => this.poll(), POLL_MS);
  }

  async poll() {
    try {
      const r = await this.w.request(this.path());
      if (r.status === 200) this.update(await r.json());
      else if (r.status === 403) { this.forbidden = true; this.render(); }
    } catch (e) {
      // Offline for a moment: the next poll tries again.
    }
  }

  // ---- error details ------------------------------------------------------

  relabelErrors() {
    const t = this.w.t;
    const last = parseTime(this.status.last_sync_at);
    this.errorsHeading.textContent = last !== null
      ? fill(t.errorDetailsFor, { time: this.w.dateTime(last) }) : t.errorDetails;
    this.moreButton.textContent = t.showMore;
    this.closeButton.textContent = t.close;
  }

  openErrors(focus = true) {
    this.errorsUrl = this.status.errors_url;
    this.errorsPanel.hidden = false;
    this.root.classList.add('expanded');
    this.errorsLink.setAttribute('aria-expanded', 'true');
    this.relabelErrors();
    this.loadErrors(true);
    if (focus) this.errorsHeading.focus();
  }

  closeErrors() {
    this.errorsPanel.hidden = true;
    this.root.classList.remove('expanded');
    this.errorsLink.setAttribute('aria-expanded', 'false');
  }

  async loadErrors(first) {
    const t = this.w.t;
    if (first) {
      this.errorsCursor = null;
      this.errorsTable.replaceChildren();
      this.errorsTable.hidden = true;
    }
    this.moreButton.hidden = true;
    this.errorsStatus.textContent = t.loading;
    const url = this.errorsUrl;
    let doc;
    try {
      const q = `?limit=${ERRORS_PAGE}` + (this.errorsCursor ? `&cursor=${encodeURIComponent(this.errorsCursor)}` : '');
      const r = await this.w.request(url + q);
      if (r.status !== 200) throw new Error(String(r.status));
      doc = await r.json();
    } catch (e) {
      this.errorsStatus.textContent = t.loadErrorsFailed;
      return;
    }
    if (url !== this.errorsUrl) return; // a newer job's list was asked for meanwhile
    const cols = ['severity', 'code', 'field', 'external_id', 'message', 'record_index'];
    if (!this.errorsTable.tHead) {
      this.errorsTable.append(el('thead', {}, el('tr', {}, ...cols.map((c) => el('th', { scope: 'col', text: t.columns[c] })))),
        el('tbody'));
    }
    const tbody = this.errorsTable.tBodies[0];
    for (const it of doc.items || []) {
      const row = el('tr', { 'data-severity': it.severity });
      for (const c of cols) {
        let v = it[c];
        if (c === 'severity') v = t.severity[v] || v;
        if (c === 'record_index' && v !== null && v !== undefined) v = this.w.num(v);
        row.append(el('td', { class: `col-${c.replace('_', '-')}`, text: v === null || v === undefined ? '' : String(v) }));
      }
      tbody.append(row);
    }
    this.errorsCursor = doc.next_cursor || null;
    this.errorsTable.hidden = tbody.rows.length === 0;
    this.errorsStatus.textContent = tbody.rows.length === 0 ? t.noErrors : '';
    this.moreButton.hidden = !this.errorsCursor;
  }
}

class MemberSyncWidget extends HTMLElement {
  static get observedAttributes() {
    return ['org', 'api-base', 'token-provider', 'lang', 'transport'];
  }

  constructor() {
    super();
    this.attachShadow({ mode: 'open' });
    const css = el('link', { rel: 'stylesheet', href: new URL('./member-sync-widget.css', import.meta.url).href });
    this.message = el('p', { class: 'message', role: 'status', hidden: true, part: 'message' });
    this.grid = el('div', { class: 'cards', part: 'cards' });
    this.region = el('div', { class: 'msw', role: 'region', part: 'root' }, this.message, this.grid);
    this.shadowRoot.append(css, this.region);
    this.cards = new Map();
    this.generation = 0;
    this.ticker = null;
  }

  connectedCallback() {
    this.applyLang();
    this.reload();
    this.ticker = setInterval(() => this.cards.forEach((c) => c.tick()), 1000);
  }

  disconnectedCallback() {
    clearInterval(this.ticker);
    clearTimeout(this.retryTimer);
    this.generation++;
    this.cards.forEach((c) => c.stop());
  }

  attributeChangedCallback(name, oldValue, newValue) {
    if (!this.isConnected || oldValue === newValue) return;
    if (name === 'lang') {
      this.applyLang();
      this.cards.forEach((c) => c.render());
      if (this.messageKey) this.showMessage(this.messageKey);
    } else {
      this.reload();
    }
  }

  get org() {
    return this.getAttribute('org') || '';
  }

  applyLang() {
    this.lang_ = langOf(this.getAttribute('lang'));
    this.t = STRINGS[this.lang_];
    this.locale = localeOf(this.lang_);
    this.region.setAttribute('aria-label', this.t.widgetLabel);
    this.region.setAttribute('lang', this.lang_);
    this.nf = new Intl.NumberFormat(this.locale);
    this.dtf = new Intl.DateTimeFormat(this.locale, { dateStyle: 'medium', timeStyle: 'short' });
    this.tf = new Intl.DateTimeFormat(this.locale, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
    this.dtfLong = new Intl.DateTimeFormat(this.locale, { dateStyle: 'short', timeStyle: 'medium' });
    this.rtf = new Intl.RelativeTimeFormat(this.locale, { numeric: 'auto' });
  }

  // ---- formatting (viewer's locale and time zone) ----

  num(n) {
    return n === null || n === undefined ? '–' : this.nf.format(n);
  }

  dateTime(ms) {
    return this.dtf.format(new Date(ms));
  }

  // Clock time; with the date when it is not today.
  clock(ms, seconds = false) {
    const d = new Date(ms);
    if (d.toDateString() !== new Date().toDateString()) return this.dtfLong.format(d);
    return seconds ? this.tf.format(d)
      : new Intl.DateTimeFormat(this.locale, { hour: '2-digit', minute: '2-digit' }).format(d);
  }

  relative(deltaMs) {
    const s = Math.max(0, Math.round(deltaMs / 1000));
    if (s < 60) return this.rtf.format(s, 'second');
    const m = Math.round(s / 60);
    if (m < 90) return this.rtf.format(m, 'minute');
    return this.rtf.format(Math.round(m / 60), 'hour');
  }

  countdown(deltaMs) {
    const s = Math.max(0, Math.ceil(deltaMs / 1000));
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const sec = String(s % 60).padStart(2, '0');
    return h ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
  }

  // ---- api access ----

  url(path) {
    const base = (this.getAttribute('api-base') || '').replace(/\/+$/, '');
    return base + path;
  }

  async token() {
    const name = this.getAttribute('token-provider');
    const fn = name ? window[name] : null;
    if (typeof fn !== 'function') return null;
    const t = await fn();
    return t ? String(t) : null;
  }

  async request(path, init = {}) {
    const token = await this.token();
    const headers = { Accept: 'application/json' };
    if (token) headers.Authorization = `Bearer ${token}`;
    return fetch(this.url(path), { ...init, headers, cache: 'no-store', credentials: 'omit' });
  }

  showMessage(key) {
    this.messageKey = key;
    this.message.textContent = key ? this.t[key] : '';
    this.message.hidden = !key;
    this.message.dataset.kind = key || '';
    this.region.dataset.state = key === 'forbidden' ? 'forbidden' : key ? 'message' : 'cards';
  }

  async reload() {
    const gen = ++this.generation;
    clearTimeout(this.retryTimer);
    this.cards.forEach((c) => c.stop());
    this.cards.clear();
    this.grid.replaceChildren();
    if (!this.org) return;
    let r;
    try {
      r = await this.request(`/api/v1/orgs/${encodeURIComponent(this.org)}/integrations`);
    } catch (e) {
      r = null;
    }
    if (gen !== this.generation) return;
    if (!r || r.status >= 500) {
      this.showMessage('loadFailed');
      this.retryTimer = setTimeout(() => this.reload(), LIST_RETRY_MS);
      return;
    }
    if (r.status === 403) {
      // ORG_ADMIN of another org: nothing of this org is shown, no button.
      this.showMessage('forbidden');
      return;
    }
    if (r.status === 401) {
      this.showMessage('unauthorized');
      return;
    }
    if (r.status !== 200) {
      this.showMessage('loadFailed');
      this.retryTimer = setTimeout(() => this.reload(), LIST_RETRY_MS);
      return;
    }
    const list = await r.json();
    if (gen !== this.generation) return;
    if (!Array.isArray(list) || list.length === 0) {
      this.showMessage('noIntegrations');
      return;
    }
    this.showMessage(null);
    for (const s of list) {
      const card = new Card(this, s);
      this.cards.set(s.integration, card);
      this.grid.append(card.root);
      card.start();
    }
  }
}

if (!customElements.get('member-sync-widget')) {
  customElements.define('member-sync-widget', MemberSyncWidget);
}

export { MemberSyncWidget };
