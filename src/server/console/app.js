// The mission-bus auditor's console. Plain JavaScript, no dependencies.
//
// Rules this file keeps:
// - The token lives in `token` (and in sessionStorage only if the user
//   ticks "keep it for this tab"). It is sent only as an Authorization
//   header: never in a URL, a cookie or localStorage.
// - Data from the server is put in the page with textContent and
//   setAttribute only, never as HTML.
// - A mission's history is never loaded whole: the timeline shows one
//   window of at most 1000 events, fetched with one events page, so a
//   1M-event mission opens as fast as a small one.
'use strict';

(() => {
  const SVGNS = 'http://www.w3.org/2000/svg';
  const TOKEN_KEY = 'mission-bus-console-token';
  /** Events per window, from most detailed to widest. */
  const ZOOMS = [10, 25, 50, 100, 200, 500, 1000];
  const DEFAULT_ZOOM = 4;
  /** The events endpoint's largest page. */
  const MAX_PAGE = 1000;
  const LABEL_W = 150;
  const AXIS_H = 30;
  const LANE_H = 46;
  const MIN_STEP = 1;
  const KNOWN_TYPES = [
    'mission_created', 'participant_joined', 'role_changed',
    'message', 'checkpoint', 'handoff',
  ];

  /**
   * The later event types, by family: each family has one colour (class
   * `ev-FAMILY`, legend swatch `sw-FAMILY`). A type in none of these (a
   * type newer than this console) is drawn as `ev-other`.
   */
  const FAMILIES = [
    { id: 'lifecycle', label: 'handoff lifecycle', types: [
      'handoff_accepted', 'handoff_heartbeat', 'handoff_completed',
      'handoff_declined', 'handoff_released', 'handoff_expired',
    ] },
    { id: 'membership', label: 'membership', types: ['participant_removed'] },
    { id: 'cell', label: 'cells', types: ['cell_started', 'cell_exited'] },
    { id: 'integrity', label: 'integrity', types: ['loss_accepted'] },
    { id: 'history', label: 'history', types: [
      'mission_forked', 'history_pruned', 'retention_set',
    ] },
  ];
  const FAMILY_OF = new Map(FAMILIES.flatMap((f) => f.types.map((t) => [t, f.id])));

  /** The colour class of a type: its own, its family's, or 'other'. */
  const kindOf = (type) =>
    KNOWN_TYPES.includes(type) ? type : (FAMILY_OF.get(type) || 'other');

  /** Type labels under the marks when there is room. */
  const SHORT = {
    mission_created: 'created', participant_joined: 'joined', role_changed: 'role',
    message: 'message', checkpoint: 'checkpoint', handoff: 'handoff',
    handoff_accepted: 'accepted', handoff_heartbeat: 'heartbeat',
    handoff_completed: 'completed', handoff_declined: 'declined',
    handoff_released: 'released', handoff_expired: 'expired',
    participant_removed: 'removed', cell_started: 'cell start', cell_exited: 'cell exit',
    loss_accepted: 'loss', mission_forked: 'forked', history_pruned: 'pruned',
    retention_set: 'retention',
  };

  const $ = (id) => document.getElementById(id);

  let token = sessionStorage.getItem(TOKEN_KEY);
  let caller = null;
  let missions = [];
  /** The open mission, or null. Replaced (never reused) on each open. */
  let view = null;

  // ----- small helpers ---------------------------------------------------

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== undefined && v !== null) e.setAttribute(k, String(v));
    }
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function svg(tag, attrs, text) {
    const e = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== undefined && v !== null) e.setAttribute(k, String(v));
    }
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  const enc = encodeURIComponent;
  const missionHref = (id, seq) => '#/m/' + enc(id) + (seq ? '/' + seq : '');

  function fmtTime(ts) {
    if (!ts) return '—';
    // "2025-01-01T12:00:00.000001Z" -> "2025-01-01 12:00:00 UTC"
    const m = /^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)/.exec(ts);
    return m ? m[1] + ' ' + m[2] + ' UTC' : ts;
  }

  function flash(message) {
    const f = $('flash');
    f.textContent = message || '';
    f.hidden = !message;
  }

  function show(id) {
    for (const s of document.querySelectorAll('main > .view')) s.hidden = s.id !== id;
  }

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  /** GET a JSON endpoint with the tab's token. */
  async function api(path, signal) {
    const resp = await fetch(path, {
      headers: { Authorization: 'Bearer ' + token, Accept: 'application/json' },
      cache: 'no-store',
      credentials: 'omit',
      referrerPolicy: 'no-referrer',
      signal,
    });
    let body = null;
    try {
      body = await resp.json();
    } catch (_) {
      body = null;
    }
    if (!resp.ok) {
      const err = (body && body.error) || {};
      const e = new ApiError(resp.status, err.code || 'http_' + resp.status,
        err.message || resp.statusText || 'request failed');
      if (resp.status === 401) signOut('The server refused the token: ' + e.message);
      throw e;
    }
    return body;
  }

  // ----- token ------------------------------------------------------------

  function showLogin(message) {
    show('login-view');
    flash(message || '');
    $('whoami').textContent = '';
    $('signout').hidden = true;
    $('token-input').focus();
  }

  function signOut(message) {
    token = null;
    caller = null;
    missions = [];
    sessionStorage.removeItem(TOKEN_KEY);
    closeMission();
    clearPages();
    showLogin(message);
  }

  /** Forget everything the last token could read. */
  function clearPages() {
    $('missions-body').replaceChildren();
    $('mission-search').value = '';
    for (const id of ['m-title', 'm-id', 'm-head', 'timeline-status', 'd-title', 'd-body', 'd-json']) {
      $(id).textContent = '';
    }
    for (const id of ['m-meta', 'timeline', 'd-fields', 'verify-result']) $(id).replaceChildren();
    $('timeline').removeAttribute('data-mission');
    $('timeline').removeAttribute('data-state');
    $('detail').hidden = true;
    $('verify-result').hidden = true;
  }

  $('login-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const input = $('token-input');
    const value = input.value.trim();
    input.value = '';
    if (!value) return;
    token = value;
    if ($('keep-token').checked) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
    try {
      const data = await api('/v1/missions');
      setCaller(data.caller);
      flash('');
      route();
    } catch (e) {
      if (e.status !== 401) signOut('Cannot sign in: ' + e.message);
    }
  });

  $('signout').addEventListener('click', () => signOut('Signed out.'));

  function setCaller(c) {
    caller = c;
    const who = $('whoami');
    if (!c) {
      who.textContent = '';
    } else if (c.kind === 'admin') {
      who.textContent = 'admin (all missions)';
    } else {
      who.textContent = c.name + ' (' + c.role + ') in ' + c.mission_id;
    }
    $('signout').hidden = !c;
  }

  // ----- routing ------------------------------------------------------------

  function route() {
    if (!token) {
      closeMission();
      showLogin();
      return;
    }
    if (!caller) {
      // A token kept for the tab (reload): say whose it is, whatever page
      // opens (a refused mission would not tell).
      api('/v1/missions').then((d) => { if (token && !caller) setCaller(d.caller); }, () => {});
    }
    const parts = location.hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
    if (parts[0] === 'm' && parts[1]) {
      const seq = parts[2] ? Number(parts[2]) : null;
      openMission(parts[1], Number.isSafeInteger(seq) && seq > 0 ? seq : null);
    } else {
      closeMission();
      openMissions();
    }
  }

  window.addEventListener('hashchange', route);

  // ----- missions list -------------------------------------------------------

  async function openMissions() {
    show('missions-view');
    flash('');
    try {
      const data = await api('/v1/missions');
      setCaller(data.caller);
      missions = data.missions;
      renderMissions();
    } catch (e) {
      if (e.status !== 401) flash('Cannot list missions: ' + e.message);
    }
  }

  $('mission-search').addEventListener('input', renderMissions);
  $('missions-refresh').addEventListener('click', openMissions);

  function verifyCell(v) {
    if (!v) return el('span', { class: 'status unknown' }, 'not verified');
    if (v.intact) {
      return el('span', { class: 'status ok', title: 'verified ' + v.verified_at },
        'intact (' + v.events_checked + ' events, head ' + v.head_sequence + ')');
    }
    const p = v.first_problem || {};
    return el('span', { class: 'status bad', title: 'verified ' + v.verified_at },
      'damaged' + (p.sequence ? ' at sequence ' + p.sequence : '') +
      ' (' + v.problems + ' problem' + (v.problems === 1 ? '' : 's') + ')');
  }

  function lineageCell(m) {
    // Lineage is not recorded by the bus yet; render it when it is.
    const td = el('td', { class: 'lineage' });
    if (m.forked_from) {
      const f = m.forked_from;
      const id = typeof f === 'string' ? f : f.mission_id;
      td.append('fork of ', el('a', { href: missionHref(id) }, id));
      if (f.sequence) td.append(' at ' + f.sequence);
    }
    if (Array.isArray(m.forks) && m.forks.length) {
      if (td.childNodes.length) td.append('; ');
      td.append('forks: ');
      m.forks.forEach((f, i) => {
        const id = typeof f === 'string' ? f : f.mission_id;
        if (i) td.append(', ');
        td.append(el('a', { href: missionHref(id) }, id));
      });
    }
    if (!td.childNodes.length) td.textContent = '—';
    return td;
  }

  function renderMissions() {
    const q = $('mission-search').value.trim().toLowerCase();
    const body = $('missions-body');
    const rows = [];
    for (const m of missions) {
      const title = m.title || '';
      if (q && !m.mission_id.toLowerCase().includes(q) && !title.toLowerCase().includes(q)) continue;
      const tr = el('tr', { class: 'mission-row', 'data-mission': m.mission_id });
      const idCell = el('td');
      idCell.append(el('a', { href: missionHref(m.mission_id), class: 'mission-link' }, m.mission_id));
      tr.append(idCell);
      if (m.error) {
        tr.append(el('td', { colspan: 6, class: 'status bad' }, 'cannot load: ' + m.error));
        rows.push(tr);
        continue;
      }
      tr.append(el('td', { class: 'title' }, title));
      tr.append(el('td', { class: 'participants' },
        m.participants.map((p) => p.name + ' (' + p.role + ')').join(', ')));
      tr.append(el('td', { class: 'num head' }, m.head_sequence));
      tr.append(el('td', { title: m.last_activity || '' }, fmtTime(m.last_activity)));
      tr.append(lineageCell(m));
      const vc = el('td', { class: 'verify-status' });
      vc.append(verifyCell(m.verify));
      tr.append(vc);
      rows.push(tr);
    }
    body.replaceChildren(...rows);
    const empty = $('missions-empty');
    empty.hidden = rows.length > 0;
    empty.textContent = missions.length ? 'No mission matches.'
      : caller && caller.kind === 'participant'
        ? 'This token may not read its mission (its role lacks the read capability).'
        : 'No missions yet.';
  }

  $('missions-body').addEventListener('click', (ev) => {
    if (ev.target.closest('a')) return;
    const tr = ev.target.closest('tr[data-mission]');
    if (tr) location.hash = missionHref(tr.dataset.mission);
  });

  // ----- one mission ----------------------------------------------------------

  function closeMission() {
    if (view) view.abort.abort();
    view = null;
  }

  async function openMission(id, seq) {
    if (view && view.mission === id) {
      // Same mission: only the selected event changed.
      if (seq) focusSequence(seq, true);
      else closeDetail();
      return;
    }
    closeMission();
    const v = {
      mission: id,
      summary: null,
      head: 0,
      lanes: [],
      zoom: DEFAULT_ZOOM,
      from: 1,
      events: [],
      follow: true,
      selected: seq,
      damaged: new Map(),
      lastSeen: 0,
      unseen: 0,
      loads: 0,
      abort: new AbortController(),
    };
    view = v;
    show('mission-view');
    flash('');
    const section = $('mission-view');
    section.classList.remove('denied');
    $('m-title').textContent = id;
    $('m-id').textContent = '';
    $('m-head').textContent = '';
    $('m-meta').replaceChildren();
    $('verify-result').hidden = true;
    $('detail').hidden = true;
    $('timeline').replaceChildren();
    $('timeline').setAttribute('data-state', 'loading');
    $('timeline').setAttribute('data-mission', id);
    $('timeline-status').textContent = 'loading…';
    setLive(false);
    let summary;
    try {
      summary = await api('/v1/missions/' + enc(id), v.abort.signal);
    } catch (e) {
      if (view !== v || e.name === 'AbortError') return;
      section.classList.add('denied');
      $('m-title').textContent = '';
      $('timeline').setAttribute('data-state', 'error');
      $('timeline-status').textContent = '';
      if (e.status !== 401) {
        flash(e.status === 403
          ? 'This token may not read mission \u201c' + id + '\u201d (' + e.code + ').'
          : 'Cannot open mission \u201c' + id + '\u201d: ' + e.message);
      }
      return;
    }
    if (view !== v) return;
    setCaller(summary.caller);
    v.summary = summary;
    v.head = summary.head_sequence;
    v.lastSeen = summary.head_sequence;
    v.lanes = summary.participants.map((p) => ({ name: p.name, role: p.role }));
    // A short mission gets the narrowest window that holds it all.
    const fits = ZOOMS.findIndex((z) => z >= v.head);
    if (fits >= 0 && fits < v.zoom) v.zoom = fits;
    renderHeader();
    if (seq) {
      setWindowAround(seq);
    } else {
      tail();
    }
    loadWindow();
    if (seq) showDetail(seq);
    runStream(v);
  }

  function renderHeader() {
    const v = view;
    const s = v.summary;
    $('m-title').textContent = s.title;
    $('m-id').textContent = s.mission_id;
    $('m-head').textContent = 'head ' + v.head;
    const meta = $('m-meta');
    const parts = [
      el('span', null, v.lanes.length + ' participants: ' +
        v.lanes.map((l) => l.name + ' (' + l.role + ')').join(', ')),
      el('span', null, s.counts.messages + ' messages, ' + s.counts.checkpoints +
        ' checkpoints, ' + s.counts.handoffs + ' handoffs'),
      el('span', { title: s.last_activity || '' }, 'last activity ' + fmtTime(s.last_activity)),
    ];
    if (s.forked_from) parts.push(lineageCell(s));
    meta.replaceChildren(...parts);
    const canVerify = !caller || caller.kind === 'admin' ||
      (caller.capabilities || []).includes('audit');
    const button = $('verify-button');
    button.disabled = !canVerify;
    button.title = canVerify ? 'verify checksums, hash chain, head and indexes'
      : 'this token lacks the audit capability';
    const scrub = $('scrubber');
    scrub.max = String(Math.max(1, v.head));
  }

  // ----- the window of events --------------------------------------------------

  const windowSize = () => ZOOMS[view.zoom];

  function clampFrom(from) {
    const last = Math.max(1, view.head - windowSize() + 1);
    return Math.min(Math.max(1, Math.floor(from)), last);
  }

  function setFrom(from) {
    view.from = clampFrom(from);
    view.follow = view.from + windowSize() - 1 >= view.head;
  }

  function tail() {
    setFrom(view.head - windowSize() + 1);
    view.follow = true;
    view.unseen = 0;
  }

  function setWindowAround(seq) {
    setFrom(seq - Math.floor(windowSize() / 2));
  }

  async function loadWindow() {
    const v = view;
    if (!v || !v.summary) return;
    const load = ++v.loads;
    const started = performance.now();
    const count = Math.max(0, Math.min(windowSize(), v.head - v.from + 1));
    const tl = $('timeline');
    tl.setAttribute('data-state', 'loading');
    $('timeline-status').textContent = 'loading…';
    const fetchRange = async (from, n) => {
      const pages = [];
      for (let f = from; f < from + n; f += MAX_PAGE) {
        const limit = Math.min(MAX_PAGE, from + n - f);
        pages.push(api('/v1/missions/' + enc(v.mission) + '/events?from=' + f + '&limit=' + limit,
          v.abort.signal));
      }
      let got = [];
      for (const page of await Promise.all(pages)) got = got.concat(page.events);
      return got;
    };
    let events = [];
    let damage = null;
    try {
      events = await fetchRange(v.from, count);
    } catch (e) {
      if (view !== v || load !== v.loads || e.name === 'AbortError') return;
      damage = e;
      // The server reads pages on the chain-checked path and names the first
      // record out of place; the records before the one it links to are
      // sound, so show those rather than nothing.
      // Past that record, reading can resume (its successor links to it).
      const at = e.code === 'corruption' && /at sequence (\d+)/.exec(e.message);
      const bad = at ? Number(at[1]) : 0;
      const end = v.from + count - 1;
      const parts = [];
      if (bad - 2 >= v.from) parts.push(fetchRange(v.from, Math.min(bad - 2, end) - v.from + 1));
      if (bad && bad + 1 <= end && bad + 1 > v.from) parts.push(fetchRange(bad + 1, end - bad));
      for (const part of parts) {
        try {
          events = events.concat(await part);
        } catch (_) {
          // Further damage: verify lists it.
        }
      }
      v.gap = bad ? [Math.max(v.from, bad - 1), bad] : null;
    }
    if (view !== v || load !== v.loads) return;
    if (damage) {
      v.events = events;
      render();
      tl.setAttribute('data-state', 'error');
      $('timeline-status').textContent = (v.gap
        ? 'Cannot read events ' + v.gap[0] + '–' + v.gap[1] + ': '
        : 'Cannot read these events: ') + damage.message +
        (events.length ? ' (showing the readable events around it)' : '');
      return;
    }
    v.events = events;
    // Live events that arrived while this page was in flight.
    if (v.follow && v.pending) {
      for (const e of v.pending) if (e.sequence > lastLoaded()) v.events.push(e);
      trimToWindow();
    }
    v.pending = null;
    render();
    const ms = performance.now() - started;
    tl.setAttribute('data-load-ms', ms.toFixed(1));
    tl.setAttribute('data-state', 'ready');
    statusLine(ms);
  }

  function lastLoaded() {
    const ev = view.events;
    return ev.length ? ev[ev.length - 1].sequence : view.from - 1;
  }

  function trimToWindow() {
    const v = view;
    const extra = v.events.length - windowSize();
    if (extra > 0) v.events.splice(0, extra);
    if (v.events.length) v.from = v.events[0].sequence;
  }

  function statusLine(ms) {
    const v = view;
    const n = v.events.length;
    const text = n
      ? 'events ' + v.from + '–' + lastLoaded() + ' of ' + v.head +
        (ms !== undefined ? ' (loaded in ' + Math.round(ms) + ' ms)' : '')
      : 'no events in this window';
    $('timeline-status').textContent = text + (v.follow ? ' · following live' :
      v.unseen ? ' · ' + v.unseen + ' newer event' + (v.unseen === 1 ? '' : 's') +
      ' (press “latest”)' : '');
    const scrub = $('scrubber');
    scrub.max = String(Math.max(1, v.head));
    scrub.value = String(v.from + Math.floor(Math.max(n, 1) / 2));
  }

  // ----- drawing -----------------------------------------------------------------

  let renderQueued = false;

  function scheduleRender() {
    if (renderQueued) return;
    renderQueued = true;
    requestAnimationFrame(() => {
      renderQueued = false;
      if (view && view.summary) {
        render();
        statusLine();
      }
    });
  }

  /** A lifecycle label for a handoff, when the server provides one. */
  function handoffState(e) {
    const lc = e.lifecycle;
    if (!lc) return null;
    const state = typeof lc === 'string' ? lc : lc.state;
    if (!state) return null;
    const until = lc.leased_until ? ' until ' + fmtTime(lc.leased_until) : '';
    return { state: String(state), label: String(state) + until };
  }

  function render() {
    const v = view;
    const tl = $('timeline');
    const wrap = $('timeline-wrap');
    const count = windowSize();
    const plotW = Math.max(200, wrap.clientWidth - LABEL_W - 24);
    const step = Math.max(MIN_STEP, plotW / count);
    const width = LABEL_W + Math.max(plotW, step * count) + 20;
    const rows = 1 + v.lanes.length;
    const height = AXIS_H + rows * LANE_H + 8;
    tl.setAttribute('width', String(width));
    tl.setAttribute('height', String(height));
    tl.setAttribute('viewBox', '0 0 ' + width + ' ' + height);
    tl.setAttribute('data-from', String(v.from));
    tl.setAttribute('data-to', String(lastLoaded()));
    tl.setAttribute('data-head', String(v.head));
    $('window-label').textContent = count + ' events per view';

    const laneOf = new Map(v.lanes.map((l, i) => [l.name, i + 1]));
    const rowY = (row) => AXIS_H + row * LANE_H + LANE_H / 2;
    const x = (seq) => LABEL_W + (seq - v.from + 0.5) * step;
    const r = Math.min(7, Math.max(2.5, step * 0.4));
    const frag = document.createDocumentFragment();

    const defs = svg('defs');
    for (const [id, cls] of [['arrowhead', 'arrowhead'], ['arrowhead-bad', 'arrowhead bad']]) {
      const marker = svg('marker', {
        id, viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7,
        orient: 'auto-start-reverse',
      });
      marker.append(svg('path', { d: 'M0,0 L10,5 L0,10 z', class: cls }));
      defs.append(marker);
    }
    frag.append(defs);

    // Rows: the operator's (mission_created, joins by the admin), then one
    // lane per participant.
    const opRow = svg('g', { class: 'oprow' });
    opRow.append(svg('rect', { x: 0, y: AXIS_H, width, height: LANE_H, class: 'row-bg op' }));
    opRow.append(svg('text', { x: 8, y: rowY(0) + 4, class: 'lane-name' }, '@operator'));
    frag.append(opRow);
    v.lanes.forEach((lane, i) => {
      const g = svg('g', { class: 'lane', 'data-participant': lane.name });
      g.append(svg('rect', {
        x: 0, y: AXIS_H + (i + 1) * LANE_H, width, height: LANE_H,
        class: 'row-bg ' + (i % 2 ? 'odd' : 'even'),
      }));
      g.append(svg('text', { x: 8, y: rowY(i + 1) - 2, class: 'lane-name' }, lane.name));
      g.append(svg('text', { x: 8, y: rowY(i + 1) + 13, class: 'lane-role' }, lane.role));
      g.append(svg('line', {
        x1: LABEL_W, x2: width, y1: rowY(i + 1), y2: rowY(i + 1), class: 'lane-line',
      }));
      frag.append(g);
    });

    // Sequence axis.
    const axis = svg('g', { class: 'axis' });
    let tick = 1;
    for (const t of [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]) {
      tick = t;
      if (t * step >= 70) break;
    }
    const first = Math.ceil(v.from / tick) * tick;
    for (let s = first; s < v.from + count; s += tick) {
      axis.append(svg('line', { x1: x(s), x2: x(s), y1: AXIS_H - 6, y2: height, class: 'tick' }));
      axis.append(svg('text', { x: x(s), y: AXIS_H - 10, class: 'tick-label' }, s));
    }
    frag.append(axis);

    // Where verify found damage, whether or not the events could be read.
    for (const [seq, what] of v.damaged) {
      if (seq < v.from || seq >= v.from + count) continue;
      const band = svg('rect', {
        x: x(seq) - Math.max(step, 6) / 2, y: AXIS_H, width: Math.max(step, 6),
        height: height - AXIS_H, class: 'damage-band', 'data-damaged-seq': seq,
      });
      band.append(svg('title', null, 'sequence ' + seq + ': ' + what));
      frag.append(band);
    }

    const arrows = svg('g', { class: 'arrows' });
    const marks = svg('g', { class: 'marks' });
    const labels = step >= 36;
    for (const e of v.events) {
      const type = e.event_type;
      const row = laneOf.has(e.sender) ? laneOf.get(e.sender) : 0;
      const cx = x(e.sequence);
      const cy = rowY(row);
      let cls = 'ev ev-' + kindOf(type);
      if (v.damaged.has(e.sequence)) cls += ' damaged';
      if (v.selected === e.sequence) cls += ' selected';
      const attrs = {
        class: cls, 'data-seq': e.sequence, 'data-type': type, 'data-sender': e.sender,
        tabindex: 0,
      };
      let mark;
      if (type === 'checkpoint') {
        const d = r * 1.6;
        mark = svg('path', Object.assign(attrs, {
          d: 'M' + cx + ',' + (cy - d) + ' L' + (cx + d) + ',' + cy + ' L' + cx + ',' +
            (cy + d) + ' L' + (cx - d) + ',' + cy + ' z',
        }));
      } else {
        mark = svg('circle', Object.assign(attrs, { cx, cy, r }));
      }
      let tip = '#' + e.sequence + ' ' + type + ' by ' + e.sender;
      if (type === 'handoff') {
        const to = laneOf.has(e.recipient) ? laneOf.get(e.recipient) : 0;
        const y2 = rowY(to);
        const dx = Math.min(28, Math.max(4, step * 0.8));
        const lc = handoffState(e);
        const arrow = svg('path', {
          d: 'M' + cx + ',' + cy + ' C' + (cx + dx) + ',' + cy + ' ' + (cx + dx) + ',' + y2 +
            ' ' + cx + ',' + (y2 + (y2 > cy ? -r - 2 : r + 2)),
          class: 'handoff-arrow' + (lc ? ' state-' + lc.state : ''),
          'data-seq': e.sequence, 'data-from': e.sender, 'data-to': e.recipient,
          'data-handoff-id': e.handoff_id, 'marker-end': 'url(#arrowhead)',
        });
        tip += ' → ' + e.recipient;
        if (lc) {
          tip += ' (' + lc.label + ')';
          arrows.append(svg('text', {
            x: cx + dx + 3, y: (cy + y2) / 2, class: 'handoff-state state-' + lc.state,
          }, lc.label));
        }
        arrow.append(svg('title', null, tip));
        arrows.append(arrow);
      }
      mark.append(svg('title', null, tip));
      marks.append(mark);
      if (labels) {
        marks.append(svg('text', { x: cx, y: cy + r + 12, class: 'ev-label' }, SHORT[type] || type));
      }
    }
    frag.append(arrows, marks);
    tl.replaceChildren(frag);
    if (v.follow) wrap.scrollLeft = wrap.scrollWidth;
  }

  function renderLegend() {
    const legend = $('legend');
    const items = KNOWN_TYPES.map((t) => {
      const span = el('span', { class: 'legend-item' });
      span.append(el('span', { class: 'swatch sw-' + t }), t.replace('_', ' '));
      return span;
    });
    for (const f of FAMILIES) {
      const span = el('span', { class: 'legend-item', 'data-family': f.id });
      span.title = f.types.join(', ');
      span.append(el('span', { class: 'swatch sw-' + f.id }), f.label);
      items.push(span);
    }
    const other = el('span', { class: 'legend-item', 'data-family': 'other' });
    other.append(el('span', { class: 'swatch sw-other' }), 'other');
    items.push(other);
    const arrow = el('span', { class: 'legend-item' });
    arrow.append(el('span', { class: 'swatch sw-arrow' }), 'handoff arrow: sender → recipient');
    legend.replaceChildren(...items, arrow);
  }

  // ----- navigation in the timeline ----------------------------------------------

  function move(from) {
    if (!view || !view.summary) return;
    setFrom(from);
    if (view.follow) view.unseen = 0;
    loadWindow();
  }

  $('page-first').addEventListener('click', () => move(1));
  $('page-older').addEventListener('click', () => view && move(view.from - windowSize()));
  $('page-newer').addEventListener('click', () => view && move(view.from + windowSize()));
  $('page-tail').addEventListener('click', () => {
    if (!view || !view.summary) return;
    tail();
    loadWindow();
  });

  function zoom(delta) {
    const v = view;
    if (!v || !v.summary) return;
    const next = Math.min(ZOOMS.length - 1, Math.max(0, v.zoom + delta));
    if (next === v.zoom) return;
    const wasFollowing = v.follow;
    const center = v.selected && v.selected >= v.from && v.selected <= lastLoaded()
      ? v.selected : v.from + Math.floor(windowSize() / 2);
    v.zoom = next;
    if (wasFollowing) tail();
    else setWindowAround(center);
    loadWindow();
  }

  $('zoom-in').addEventListener('click', () => zoom(-1));
  $('zoom-out').addEventListener('click', () => zoom(1));

  function focusSequence(seq, detail) {
    const v = view;
    if (!v || !v.summary) return;
    v.selected = seq;
    if (seq < v.from || seq > lastLoaded()) {
      setWindowAround(seq);
      loadWindow();
    } else {
      render();
    }
    if (detail) showDetail(seq);
  }

  $('jump-input').addEventListener('change', (ev) => {
    const seq = Number(ev.target.value);
    if (view && Number.isSafeInteger(seq) && seq >= 1) {
      location.hash = missionHref(view.mission, Math.min(seq, view.head));
    }
  });

  $('scrubber').addEventListener('change', (ev) => {
    const seq = Number(ev.target.value);
    if (view && view.summary) move(seq - Math.floor(windowSize() / 2));
  });

  function selectFrom(target) {
    const m = target.closest('[data-seq]');
    if (m && view) location.hash = missionHref(view.mission, Number(m.getAttribute('data-seq')));
  }

  $('timeline').addEventListener('click', (ev) => selectFrom(ev.target));
  $('timeline').addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter') selectFrom(ev.target);
  });

  document.addEventListener('keydown', (ev) => {
    if (!view || !view.summary || $('mission-view').hidden) return;
    if (ev.target.closest('input, textarea, select')) return;
    if (ev.key === 'ArrowLeft') $('page-older').click();
    else if (ev.key === 'ArrowRight') $('page-newer').click();
    else if (ev.key === '+' || ev.key === '=') zoom(-1);
    else if (ev.key === '-') zoom(1);
    else if (ev.key === 'Escape') closeDetail();
  });

  let resizeQueued = null;
  window.addEventListener('resize', () => {
    clearTimeout(resizeQueued);
    resizeQueued = setTimeout(() => view && view.summary && render(), 100);
  });

  // ----- event detail --------------------------------------------------------------

  function closeDetail() {
    $('detail').hidden = true;
    if (view) {
      view.selected = null;
      if (view.summary) render();
      if (location.hash.split('/').length > 3) {
        history.replaceState(null, '', missionHref(view.mission));
      }
    }
  }

  $('detail-close').addEventListener('click', closeDetail);

  async function showDetail(seq) {
    const v = view;
    const panel = $('detail');
    panel.hidden = false;
    panel.setAttribute('data-state', 'loading');
    $('d-title').textContent = 'Event ' + seq;
    $('d-fields').replaceChildren();
    $('d-body').textContent = '';
    $('d-json').textContent = '';
    let rec;
    try {
      rec = await api('/v1/missions/' + enc(v.mission) + '/events/' + seq, v.abort.signal);
    } catch (e) {
      if (view !== v || e.name === 'AbortError') return;
      panel.setAttribute('data-state', 'error');
      $('d-fields').replaceChildren(el('dt', null, 'error'), el('dd', { class: 'status bad' }, e.message));
      return;
    }
    if (view !== v || v.selected !== seq) return;
    const e = rec.event;
    const idField = ['message_id', 'checkpoint_id', 'handoff_id', 'event_id'].find((k) => k in e);
    $('d-title').textContent = 'Event ' + e.sequence + ': ' + e.event_type;
    const rows = [
      ['sequence', e.sequence, 'd-seq'],
      ['type', e.event_type, 'd-type'],
      ['sender', e.sender, 'd-sender'],
      ['timestamp', e.timestamp, 'd-ts'],
      [idField, e[idField], 'd-id'],
    ];
    if (e.event_type === 'handoff') {
      rows.push(['recipient', e.recipient, 'd-recipient'], ['checkpoint', e.checkpoint_id, null],
        ['note', e.note, null]);
      const lc = handoffState(e);
      if (lc) rows.push(['lifecycle', lc.label, 'd-lifecycle']);
    }
    if (e.event_type === 'message') rows.push(['topic', e.topic, null]);
    if (e.event_type === 'checkpoint') {
      rows.push(['summary', e.summary, null], ['artifacts', (e.artifacts || []).join(', ') || '—', null]);
    }
    if (e.participant) rows.push(['participant', e.participant + ' (' + e.role + ')', null]);
    rows.push(['hash', rec.hash || 'unavailable', 'd-hash'],
      ['previous hash', rec.previous_hash || 'unavailable', 'd-prev']);
    const fields = [];
    for (const [k, val, id] of rows) {
      fields.push(el('dt', null, k), el('dd', { id, class: k.includes('hash') ? 'hash' : null }, val));
    }
    $('d-fields').replaceChildren(...fields);
    let bodyTitle = 'Payload';
    let body = e.payload;
    if (e.event_type === 'checkpoint') { bodyTitle = 'State'; body = e.state; }
    else if (e.event_type === 'participant_joined') { bodyTitle = 'Metadata'; body = e.metadata; }
    else if (e.event_type === 'mission_created') { bodyTitle = 'Config'; body = e.config; }
    else if (e.event_type === 'handoff') { bodyTitle = 'Note'; body = e.note; }
    $('d-body-title').textContent = bodyTitle;
    $('d-body').textContent = typeof body === 'string' ? body : JSON.stringify(body, null, 2);
    $('d-json').textContent = JSON.stringify(e, null, 2);
    panel.setAttribute('data-state', 'ready');
    panel.setAttribute('data-seq', String(e.sequence));
  }

  // ----- verify --------------------------------------------------------------------

  $('verify-button').addEventListener('click', async () => {
    const v = view;
    if (!v || !v.summary) return;
    const out = $('verify-result');
    const button = $('verify-button');
    button.disabled = true;
    out.hidden = false;
    out.className = 'verify';
    out.removeAttribute('data-intact');
    out.replaceChildren(el('span', null, 'verifying ' + v.head + ' events…'));
    try {
      const r = await api('/v1/missions/' + enc(v.mission) + '/verify', v.abort.signal);
      if (view !== v) return;
      v.damaged = new Map();
      out.setAttribute('data-intact', String(r.intact));
      if (r.intact) {
        out.className = 'verify ok';
        out.replaceChildren(
          el('strong', null, 'Intact.'),
          el('span', null, ' ' + r.events_checked + ' events checked; head ' + r.head_sequence +
            ', head hash '),
          el('code', { class: 'hash', id: 'verify-head-hash' }, r.head_hash));
      } else {
        out.className = 'verify bad';
        const list = el('ol', { class: 'problems' });
        for (const p of r.problems) {
          const li = el('li', { 'data-seq': p.sequence });
          if (p.sequence) {
            v.damaged.set(p.sequence, p.problem);
            li.append(el('a', { href: missionHref(v.mission, p.sequence) }, 'sequence ' + p.sequence),
              ': ');
          }
          li.append(p.problem);
          list.append(li);
        }
        const firstSeq = r.problems.find((p) => p.sequence);
        out.replaceChildren(
          el('strong', null, 'Damaged: ' + r.problems.length + ' problem' +
            (r.problems.length === 1 ? '' : 's') + '.'),
          el('span', null, firstSeq ? ' The first is at sequence ' + firstSeq.sequence + '.'
            : ' (not tied to one sequence)'),
          list);
      }
      render();
    } catch (e) {
      if (view !== v || e.name === 'AbortError') return;
      out.className = 'verify bad';
      out.replaceChildren(el('span', null, e.status === 403
        ? 'This token may not verify (it needs the audit capability).'
        : 'Verify failed: ' + e.message));
    } finally {
      button.disabled = false;
    }
  });

  // ----- live ----------------------------------------------------------------------

  function setLive(on) {
    const live = $('m-live');
    live.classList.toggle('on', on);
    live.textContent = on ? 'live' : 'offline';
  }

  /** Follow the event stream with fetch (EventSource cannot send the
   * Authorization header); resume after the last event seen. */
  async function runStream(v) {
    let backoff = 500;
    while (view === v && !v.abort.signal.aborted && token) {
      try {
        const resp = await fetch('/v1/missions/' + enc(v.mission) + '/events/stream?from=' +
          (v.lastSeen + 1), {
          headers: {
            Authorization: 'Bearer ' + token,
            Accept: 'text/event-stream',
            'Last-Event-ID': String(v.lastSeen),
          },
          cache: 'no-store',
          credentials: 'omit',
          signal: v.abort.signal,
        });
        if (resp.status === 401) { signOut('The server refused the token.'); return; }
        if (resp.status === 403 || resp.status === 404) return;
        if (!resp.ok) throw new Error('stream: HTTP ' + resp.status);
        setLive(true);
        backoff = 500;
        const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let cut;
          while ((cut = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, cut);
            buf = buf.slice(cut + 2);
            onBlock(v, block);
          }
        }
      } catch (e) {
        if (v.abort.signal.aborted) return;
      }
      if (view !== v) return;
      setLive(false);
      await sleep(backoff);
      backoff = Math.min(backoff * 2, 10000);
    }
  }

  function onBlock(v, block) {
    let data = '';
    for (const raw of block.split('\n')) {
      const line = raw.replace(/\r$/, '');
      if (line.startsWith('data:')) data += line.slice(5).replace(/^ /, '');
    }
    if (!data) return; // a keep-alive comment
    let e;
    try {
      e = JSON.parse(data);
    } catch (_) {
      return;
    }
    if (view !== v || e.sequence <= v.lastSeen) return;
    v.lastSeen = e.sequence;
    v.head = Math.max(v.head, e.sequence);
    const c = v.summary.counts;
    if (e.event_type === 'message') c.messages++;
    else if (e.event_type === 'checkpoint') c.checkpoints++;
    else if (e.event_type === 'handoff') c.handoffs++;
    v.summary.last_activity = e.timestamp;
    if (e.event_type === 'participant_joined') v.lanes.push({ name: e.participant, role: e.role });
    if (e.event_type === 'role_changed') {
      const lane = v.lanes.find((l) => l.name === e.participant);
      if (lane) lane.role = e.role;
    }
    renderHeader();
    if (v.follow) {
      if ($('timeline').getAttribute('data-state') === 'loading') {
        (v.pending = v.pending || []).push(e);
        return;
      }
      if (e.sequence === lastLoaded() + 1) {
        v.events.push(e);
        trimToWindow();
      }
      scheduleRender();
    } else {
      v.unseen++;
      statusLine();
    }
  }

  // ----- start ------------------------------------------------------------------------

  renderLegend();
  route();
})();
