// murmur dashboard: plain JavaScript, no build step, nothing fetched from outside
// this agent.
//
// Data: the agent's JSON API, polled lightly (members every second, so that a dead
// node shows within about a second of gossip declaring it), and GET /v1/events
// followed with fetch and a streaming body reader (EventSource cannot send the
// Authorization header). An event triggers an immediate refresh of what it changes.
//
// Safety: node names, labels, intent names and reasons are written by whoever runs a
// node or pushes an intent. They reach the page only as text nodes and attribute
// values (el(), below); nothing here assigns innerHTML.
'use strict';
(function () {
  const TOKEN_KEY = 'murmur.token';
  const MAX_EVENTS = 500;
  const STATUSES = ['alive', 'suspect', 'dead', 'left'];

  const state = {
    route: {view: 'fleet', arg: ''},
    self: null, // GET /v1/status
    members: [], // GET /v1/members
    regions: [], // GET /v1/regions
    workloads: {}, // region name → GET /v1/workloads?region= answer
    intents: [], // GET /v1/intents
    events: [], // GET /v1/events, oldest first, at most MAX_EVENTS
    notices: [], // missed events ("truncated")
    lastEventID: 0,
    stream: 'connecting', // connecting | live | reconnecting
    auth: '', // why a token is needed ('' when none is)
    errors: {}, // what → message of its last failed request
    loaded: false, // members have been fetched once
  };
  const seen = {}; // key → JSON of the last value stored, to skip needless renders

  // ---- tokens -------------------------------------------------------------

  function token() {
    try {
      return sessionStorage.getItem(TOKEN_KEY) || localStorage.getItem(TOKEN_KEY) || '';
    } catch (e) {
      return '';
    }
  }

  function saveToken(t, remember) {
    try {
      sessionStorage.setItem(TOKEN_KEY, t);
      if (remember) localStorage.setItem(TOKEN_KEY, t);
      else localStorage.removeItem(TOKEN_KEY);
    } catch (e) { /* storage disabled: the token lives as long as the page */ }
    memToken = t;
  }

  function forgetToken() {
    try {
      sessionStorage.removeItem(TOKEN_KEY);
      localStorage.removeItem(TOKEN_KEY);
    } catch (e) { /* nothing stored */ }
    memToken = '';
  }

  let memToken = token();

  function headers(accept) {
    const h = {Accept: accept};
    if (memToken) h.Authorization = 'Bearer ' + memToken;
    return h;
  }

  class AuthError extends Error {}

  // needToken shows the token form: the API answered 401 (or 403: a token whose role
  // is too small).
  function needToken(msg) {
    if (!state.auth) {
      state.auth = msg || 'Give a token of this agent.';
      render();
    }
  }

  // api GETs path and returns the decoded JSON answer.
  async function api(path) {
    const resp = await fetch(path, {headers: headers('application/json'), cache: 'no-store'});
    if (resp.status === 401 || resp.status === 403) {
      const msg = await errorText(resp);
      needToken(resp.status === 403 ? msg : memToken ? 'This agent does not know that token.' : 'Give a token of this agent.');
      throw new AuthError(msg);
    }
    if (!resp.ok) throw new Error(await errorText(resp));
    return resp.json();
  }

  async function errorText(resp) {
    try {
      const b = await resp.json();
      if (b && typeof b.error === 'string') return b.error;
    } catch (e) { /* not the error envelope */ }
    return 'HTTP ' + resp.status;
  }

  // ---- polling ------------------------------------------------------------

  // poller runs load every `every` ms, never twice at once; kick() runs it now.
  function poller(name, every, load) {
    let timer = 0;
    let running = false;
    let again = false;
    async function run() {
      if (running) {
        again = true;
        return;
      }
      running = true;
      clearTimeout(timer);
      if (!state.auth) {
        try {
          await load();
          delete state.errors[name];
        } catch (e) {
          if (!(e instanceof AuthError)) state.errors[name] = e.message || String(e);
          render();
        }
      }
      running = false;
      if (again) {
        again = false;
        run();
        return;
      }
      timer = setTimeout(run, every);
    }
    return {kick: run};
  }

  // set stores value under key and renders when it changed.
  function set(key, value) {
    const j = JSON.stringify(value);
    if (seen[key] === j) return;
    seen[key] = j;
    state[key] = value;
    render();
  }

  const pollers = {
    members: poller('members', 1000, async () => {
      const r = await api('/v1/members');
      state.loaded = true;
      set('members', r.members || []);
    }),
    regions: poller('regions', 2000, async () => set('regions', (await api('/v1/regions')).regions || [])),
    status: poller('status', 5000, async () => set('self', await api('/v1/status'))),
    intents: poller('intents', 5000, async () => set('intents', (await api('/v1/intents')).intents || [])),
    // Every region's workloads, asked through this agent (it forwards to each
    // region's coordinator): only while a view shows them.
    workloads: poller('workloads', 3000, async () => {
      if (!['workloads', 'node', 'intents'].includes(state.route.view)) return;
      const names = regionNames();
      const out = {};
      await Promise.all(names.map(async (r) => {
        try {
          out[r] = await api('/v1/workloads?region=' + encodeURIComponent(r));
        } catch (e) {
          if (e instanceof AuthError) throw e;
          out[r] = {error: e.message || String(e), workloads: [], intents: []};
        }
      }));
      set('workloads', out);
    }),
  };

  const soon = {};
  // kickSoon coalesces the refreshes a burst of events asks for.
  function kickSoon(name) {
    if (soon[name]) return;
    soon[name] = setTimeout(() => {
      soon[name] = 0;
      pollers[name].kick();
    }, 200);
  }

  function kickAll() {
    for (const p of Object.values(pollers)) p.kick();
  }

  // ---- the event stream ---------------------------------------------------

  async function follow() {
    let backoff = 500;
    for (;;) {
      if (state.auth) {
        await sleep(500);
        continue;
      }
      const q = state.lastEventID ? 'since=' + state.lastEventID : 'limit=200';
      try {
        const resp = await fetch('/v1/events?follow=1&format=ndjson&' + q, {headers: headers('application/x-ndjson'), cache: 'no-store'});
        if (resp.status === 401 || resp.status === 403) {
          needToken(resp.status === 403 ? await errorText(resp) : 'Give a token of this agent.');
          continue;
        }
        if (!resp.ok || !resp.body) throw new Error(await errorText(resp));
        state.stream = 'live';
        delete state.errors.events;
        render();
        backoff = 500;
        const reader = resp.body.getReader();
        const dec = new TextDecoder();
        let buf = '';
        for (;;) {
          const {value, done} = await reader.read();
          if (done) break;
          buf += dec.decode(value, {stream: true});
          let i;
          while ((i = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, i).trim();
            buf = buf.slice(i + 1);
            if (line) onLine(line);
          }
        }
        throw new Error('the agent closed the event stream');
      } catch (e) {
        state.stream = 'reconnecting';
        state.errors.events = e.message || String(e);
        render();
        await sleep(backoff);
        backoff = Math.min(backoff * 2, 5000);
      }
    }
  }

  function onLine(line) {
    let e;
    try {
      e = JSON.parse(line);
    } catch (err) {
      return; // not an event: skip it, keep the stream
    }
    if (!e || typeof e !== 'object') return;
    if (e.type === 'truncated') {
      state.notices.push(e);
      if (state.notices.length > 5) state.notices.shift();
      render();
      return;
    }
    if (typeof e.id !== 'number' || e.id <= state.lastEventID) return;
    state.lastEventID = e.id;
    state.events.push(e);
    if (state.events.length > MAX_EVENTS) state.events.splice(0, state.events.length - MAX_EVENTS);
    switch (e.type) {
      case 'node_dead': case 'node_alive': case 'node_left': {
        // The members list is the truth; an event that contradicts it says: look now.
        // (The backlog replays old events too: those that agree cost nothing.)
        const m = state.members.find((x) => x.name === e.node);
        if (state.loaded && (!m || m.status !== e.type.slice(5))) pollers.members.kick();
        break;
      }
      case 'coordinator_changed': case 'headless':
        kickSoon('regions');
        break;
      case 'placed': case 'replaced': case 'migrated': case 'stopped': case 'unplaced':
        kickSoon('workloads');
        break;
    }
    render();
  }

  function sleep(ms) {
    return new Promise((r) => setTimeout(r, ms));
  }

  // ---- DOM helpers --------------------------------------------------------

  // el builds an element. attrs are set with setAttribute (or dataset for data-*
  // keys given as {data: {...}}); children are nodes or strings, and strings become
  // text nodes. This is the only way data reaches the page.
  function el(tag, attrs, ...children) {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'data') {
        for (const [dk, dv] of Object.entries(v)) n.dataset[dk] = String(dv);
      } else if (k === 'class') {
        n.className = v;
      } else {
        n.setAttribute(k, String(v));
      }
    }
    append(n, children);
    return n;
  }

  function append(n, children) {
    for (const c of children) {
      if (c === undefined || c === null || c === false) continue;
      if (Array.isArray(c)) append(n, c);
      else n.appendChild(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
    }
  }

  function nodeLink(name) {
    if (!name) return '';
    return el('a', {href: '#/node/' + encodeURIComponent(name)}, name);
  }

  function badge(text, kind) {
    return el('span', {class: 'badge ' + (kind || '')}, text);
  }

  // stateClass keeps class names to the words the stylesheet knows.
  function stateClass(s) {
    return /^[a-z_-]{1,20}$/.test(s || '') ? s : 'unknown';
  }

  function bar(v) {
    const f = typeof v === 'number' && isFinite(v) ? v : 0;
    const fill = el('span');
    fill.style.width = Math.max(0, Math.min(100, f * 100)).toFixed(1) + '%';
    const cls = 'bar' + (f >= 0.85 ? ' hot' : f >= 0.7 ? ' warm' : '');
    return el('span', {class: 'load'}, el('span', {class: cls}, fill), el('span', {class: 'pct'}, Math.round(f * 100) + '%'));
  }

  function table(cols, rows, cls) {
    return el('table', {class: cls}, el('thead', {}, el('tr', {}, cols.map((c) => el('th', {class: c.endsWith('#') ? 'num' : ''}, c.replace(/#$/, ''))))), el('tbody', {}, rows));
  }

  function num(v) {
    return el('td', {class: 'num'}, String(v === undefined || v === null ? '' : v));
  }

  function hhmmss(t) {
    const d = new Date(t);
    if (isNaN(d)) return '';
    const p = (x) => String(x).padStart(2, '0');
    return p(d.getHours()) + ':' + p(d.getMinutes()) + ':' + p(d.getSeconds());
  }

  function ago(t) {
    const d = new Date(t);
    if (!t || isNaN(d) || d.getFullYear() < 2000) return '';
    const s = Math.max(0, Math.round((Date.now() - d.getTime()) / 1000));
    if (s < 60) return s + 's ago';
    if (s < 3600) return Math.floor(s / 60) + 'm ago';
    if (s < 86400) return Math.floor(s / 3600) + 'h ago';
    return Math.floor(s / 86400) + 'd ago';
  }

  function labels(m) {
    return Object.entries(m || {}).sort().map(([k, v]) => k + '=' + v).join(', ');
  }

  // ---- data joins ---------------------------------------------------------

  function regionNames() {
    const names = new Set(state.regions.map((r) => r.name));
    for (const m of state.members) if (m.region) names.add(m.region);
    return [...names].sort();
  }

  function regionOf(name) {
    return state.regions.find((r) => r.name === name) || {name, voters: [], witnesses: []};
  }

  // roles lists what a node is in the Raft groups: coordinator of its region, voter,
  // witness voter of another region.
  function roles(m) {
    const out = [];
    for (const r of state.regions) {
      if (r.coordinator === m.name) out.push('coordinator of ' + r.name);
      else if ((r.witnesses || []).includes(m.name)) out.push('witness for ' + r.name);
      else if ((r.voters || []).includes(m.name)) out.push('voter');
    }
    return out;
  }

  function allInstances() {
    const out = [];
    for (const v of Object.values(state.workloads)) for (const w of v.workloads || []) out.push(w);
    return out;
  }

  // ---- views --------------------------------------------------------------

  function viewFleet() {
    const out = [];
    if (!state.loaded) return [el('p', {class: 'muted'}, 'Loading the fleet…')];
    const alive = state.members.filter((m) => m.status === 'alive').length;
    out.push(el('h1', {}, 'Fleet ', el('span', {class: 'muted'}, '· ' + state.members.length + ' nodes, ' + alive + ' alive, ' + regionNames().length + ' regions')));
    for (const name of regionNames()) {
      const r = regionOf(name);
      const ms = state.members.filter((m) => m.region === name).sort((a, b) => a.name.localeCompare(b.name));
      const head = el('h2', {}, name,
        r.coordinator ? badge('coordinator ' + r.coordinator + (r.term ? ' · term ' + r.term : ''), 'role') : null,
        r.headless ? badge('headless', 'headless') : (!r.coordinator ? badge('no coordinator', 'unknown') : null));
      const meta = el('p', {class: 'meta'},
        'voters: ' + ((r.voters || []).join(', ') || '—'),
        (r.witnesses || []).length ? ' · witnesses (from other regions): ' + r.witnesses.join(', ') : '',
        r.headless && r.headless_reason ? ' · ' + r.headless_reason : '');
      const rows = ms.map((m) => {
        const st = STATUSES.includes(m.status) ? m.status : 'unknown';
        return el('tr', {data: {node: m.name, status: st}},
          el('td', {}, nodeLink(m.name)),
          el('td', {}, badge(m.status || '?', st), ' ', el('span', {class: 'muted'}, m.status !== 'alive' ? ago(m.since) : '')),
          el('td', {}, bar(m.load && m.load.cpu)),
          el('td', {}, bar(m.load && m.load.memory)),
          num(m.instances),
          el('td', {}, roles(m).map((x) => badge(x, 'role'))),
          el('td', {class: 'mono'}, m.addr || ''),
          el('td', {class: 'muted'}, labels(m.labels)));
      });
      out.push(el('section', {class: 'card', data: {region: name}}, head, meta,
        table(['node', 'status', 'cpu', 'memory', 'instances#', 'role', 'address', 'labels'], rows)));
    }
    return out;
  }

  function instanceRows(ws, withNode) {
    return ws.map((w) => el('tr', {data: {instance: w.instance, intent: w.intent, node: w.node, state: stateClass(w.state)}},
      el('td', {class: 'mono'}, w.instance),
      el('td', {}, w.intent),
      withNode ? el('td', {}, nodeLink(w.node)) : null,
      el('td', {}, badge(w.state || '?', stateClass(w.state))),
      num(w.restarts),
      el('td', {class: 'muted'}, ago(w.since)),
      el('td', {class: 'why'}, w.cause ? w.cause + ': ' : '', w.reason || ''),
      el('td', {class: 'error'}, w.error || '')));
  }

  function viewWorkloads() {
    const out = [el('h1', {}, 'Workloads')];
    const names = regionNames();
    if (!names.length) return out.concat(el('p', {class: 'muted'}, 'No region is known yet.'));
    for (const name of names) {
      const v = state.workloads[name];
      const sec = el('section', {class: 'card', data: {region: name}});
      append(sec, [el('h2', {}, name, v && v.coordinator ? badge('coordinator ' + v.coordinator, 'role') : null)]);
      if (!v) {
        append(sec, [el('p', {class: 'muted'}, 'Loading…')]);
      } else if (v.error) {
        append(sec, [el('p', {class: 'error'}, v.error)]);
      } else {
        const sums = (v.intents || []).slice().sort((a, b) => a.intent.localeCompare(b.intent));
        append(sec, [
          el('p', {class: 'meta'}, 'placement table generation ' + (v.generation || 0)),
          sums.length ? table(['intent', 'desired#', 'placed#', 'running#', 'unplaced#', 'why not placed'], sums.map((s) =>
            el('tr', {data: {intent: s.intent, running: s.running, desired: s.desired}},
              el('td', {}, s.intent), num(s.desired), num(s.placed), num(s.running), num(s.unplaced || 0),
              el('td', {class: 'why'}, s.reason || (s.unplaced ? 'see the unplaced events' : '')))), 'summary') :
            el('p', {class: 'muted'}, 'No workload targets this region.'),
        ]);
        const ws = (v.workloads || []).slice().sort((a, b) => (a.intent + a.instance).localeCompare(b.intent + b.instance));
        if (ws.length) {
          append(sec, [el('div', {class: 'sub'}, table(['instance', 'intent', 'node', 'state', 'restarts#', 'since', 'why here', 'last error'], instanceRows(ws, true)))]);
        }
        const unplaced = state.events.filter((e) => e.type === 'unplaced' && e.region === name).slice(-5).reverse();
        if (unplaced.length) {
          append(sec, [el('div', {class: 'sub'}, el('p', {class: 'meta'}, 'Recent unplaced decisions'),
            table(['time', 'intent', 'count#', 'reason'], unplaced.map((e) => el('tr', {},
              el('td', {class: 'mono'}, hhmmss(e.time)), el('td', {}, e.intent || ''), num(e.count || ''), el('td', {class: 'why'}, e.reason || '')))))]);
        }
      }
      out.push(sec);
    }
    return out;
  }

  function eventRows(evs) {
    return evs.map((e) => el('tr', {data: {eventType: stateClass(e.type), eventId: e.id}},
      el('td', {class: 'mono'}, hhmmss(e.time)),
      el('td', {}, badge(e.type, 'role')),
      el('td', {}, e.region || ''),
      el('td', {}, nodeLink(e.node), e.from ? [' from ', nodeLink(e.from)] : null),
      el('td', {class: 'mono'}, e.instance || e.intent || ''),
      el('td', {class: 'why'}, e.cause ? e.cause + ': ' : '', e.reason || '')));
  }

  function viewEvents() {
    const out = [el('h1', {}, 'Events ', el('span', {class: 'muted'}, '· newest first, as this agent records them'))];
    for (const n of state.notices) out.push(el('p', {class: 'notice'}, 'Some events were missed: ' + (n.reason || '')));
    const evs = state.events.slice().reverse();
    if (!evs.length) out.push(el('p', {class: 'muted'}, 'No event yet.'));
    else out.push(el('section', {class: 'card'}, table(['time', 'type', 'region', 'node', 'instance', 'reason'], eventRows(evs))));
    return out;
  }

  function viewNode(name) {
    const m = state.members.find((x) => x.name === name);
    const out = [el('h1', {}, 'Node ', name)];
    if (!m) {
      out.push(el('p', {class: state.loaded ? 'error' : 'muted'}, state.loaded ? 'This agent does not know a node of that name.' : 'Loading…'));
      return out;
    }
    const st = STATUSES.includes(m.status) ? m.status : 'unknown';
    out.push(el('section', {class: 'card', data: {node: m.name, status: st}},
      el('dl', {class: 'kv'},
        el('dt', {}, 'status'), el('dd', {}, badge(m.status, st), ' ', el('span', {class: 'muted'}, ago(m.since))),
        el('dt', {}, 'region'), el('dd', {}, m.region || ''),
        el('dt', {}, 'role'), el('dd', {}, roles(m).join(', ') || '—'),
        el('dt', {}, 'address'), el('dd', {class: 'mono'}, m.addr || ''),
        el('dt', {}, 'cpu'), el('dd', {}, bar(m.load && m.load.cpu)),
        el('dt', {}, 'memory'), el('dd', {}, bar(m.load && m.load.memory)),
        el('dt', {}, 'health'), el('dd', {}, m.health || '—'),
        el('dt', {}, 'drivers'), el('dd', {}, (m.drivers || []).join(', ') || '—'),
        el('dt', {}, 'version'), el('dd', {}, m.version || '—'),
        el('dt', {}, 'labels'), el('dd', {}, labels(m.labels) || '—'))));
    const ws = allInstances().filter((w) => w.node === name).sort((a, b) => a.instance.localeCompare(b.instance));
    out.push(el('section', {class: 'card'}, el('h2', {}, 'Instances ', el('span', {class: 'muted'}, '· as the coordinator of ' + (m.region || '') + ' reports them')),
      ws.length ? el('div', {class: 'sub'}, table(['instance', 'intent', 'state', 'restarts#', 'since', 'why here', 'last error'], instanceRows(ws, false))) :
        el('p', {class: 'muted'}, state.workloads[m.region] ? 'No instance is placed on this node.' : 'Loading…')));
    if (state.self && state.self.name === name) {
      const local = (state.self.instances || []).slice().sort((a, b) => a.id.localeCompare(b.id));
      out.push(el('section', {class: 'card'}, el('h2', {}, 'Supervisor ', el('span', {class: 'muted'}, '· this agent, first hand')),
        local.length ? el('div', {class: 'sub'}, table(['instance', 'intent', 'state', 'restarts#', 'last exit#', 'started', 'last error'], local.map((i) =>
          el('tr', {data: {localInstance: i.id}},
            el('td', {class: 'mono'}, i.id), el('td', {}, i.intent), el('td', {}, badge(i.state, stateClass(i.state))),
            num(i.restarts), num(i.lastExitCode), el('td', {class: 'muted'}, ago(i.startedAt)), el('td', {class: 'error'}, i.error || ''))))) :
          el('p', {class: 'muted'}, 'The supervisor runs nothing.')));
    }
    const evs = state.events.filter((e) => e.node === name || e.from === name).slice(-50).reverse();
    out.push(el('section', {class: 'card'}, el('h2', {}, 'Events'),
      evs.length ? el('div', {class: 'sub'}, table(['time', 'type', 'region', 'node', 'instance', 'reason'], eventRows(evs))) :
        el('p', {class: 'muted'}, 'No event about this node in the feed.')));
    return out;
  }

  function viewIntents() {
    const out = [el('h1', {}, 'Intents')];
    const totals = {};
    for (const v of Object.values(state.workloads)) {
      for (const s of v.intents || []) {
        const t = totals[s.intent] || (totals[s.intent] = {desired: 0, running: 0});
        t.desired += s.desired;
        t.running += s.running;
      }
    }
    const ins = state.intents.slice().sort((a, b) => a.name.localeCompare(b.name));
    if (!ins.length) return out.concat(el('p', {class: 'muted'}, 'The intent store is empty: push one with murmur apply -f FILE.'));
    out.push(el('section', {class: 'card'}, table(['name', 'kind', 'version', 'signed by', 'origin', 'running / desired', 'hash'], ins.map((i) => {
      const t = totals[i.name];
      return el('tr', {data: {intent: i.name, version: i.version}},
        el('td', {}, i.name), el('td', {}, i.kind), el('td', {class: 'mono'}, i.version),
        el('td', {}, i.signedBy ? el('span', {class: 'mono'}, i.signedBy) : el('span', {class: 'muted'}, 'unsigned')),
        el('td', {}, nodeLink(i.origin)),
        el('td', {}, t ? t.running + ' / ' + t.desired : (i.kind === 'Workload' ? '…' : '')),
        el('td', {class: 'mono muted'}, (i.hash || '').slice(0, 12)));
    }))));
    return out;
  }

  // ---- rendering ----------------------------------------------------------

  let pending = false;
  let rendered = false;

  function render() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(draw);
  }

  function draw() {
    pending = false;
    const auth = document.getElementById('auth');
    const main = document.getElementById('main');
    auth.hidden = !state.auth;
    main.hidden = !!state.auth;
    document.getElementById('auth-msg').textContent = state.auth;
    document.getElementById('forget').hidden = !memToken;
    for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.dataset.view === state.route.view || (state.route.view === 'node' && a.dataset.view === 'fleet'));
    const conn = document.getElementById('conn');
    const self = state.self ? state.self.name + ' · ' + state.self.region + ' · ' : '';
    conn.replaceChildren(el('span', {class: 'dot' + (state.stream === 'live' ? ' live' : '')}), self + 'events ' + state.stream);
    const errs = Object.entries(state.errors).map(([k, v]) => k + ': ' + v);
    conn.title = errs.join('\n');
    if (state.auth) return;
    let view;
    switch (state.route.view) {
      case 'workloads': view = viewWorkloads(); break;
      case 'events': view = viewEvents(); break;
      case 'intents': view = viewIntents(); break;
      case 'node': view = viewNode(state.route.arg); break;
      default: view = viewFleet();
    }
    if (errs.length && state.route.view !== 'events') view.unshift(el('p', {class: 'notice'}, 'Some data could not be read: ' + errs.join('; ')));
    main.replaceChildren(...view);
    document.documentElement.dataset.view = state.route.view;
    if (!rendered && state.loaded) {
      rendered = true;
      performance.mark('murmur-first-render');
      document.documentElement.dataset.ready = '1';
    }
  }

  function route() {
    const h = location.hash.replace(/^#\/?/, '');
    const [view, ...rest] = h.split('/');
    let arg = '';
    try {
      arg = decodeURIComponent(rest.join('/'));
    } catch (e) { /* a malformed name: no node has it */ }
    state.route = {view: ['fleet', 'workloads', 'events', 'intents', 'node'].includes(view) ? view : 'fleet', arg};
    if (['workloads', 'node', 'intents'].includes(state.route.view)) pollers.workloads.kick();
    render();
  }

  // ---- start --------------------------------------------------------------

  document.getElementById('auth-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const input = document.getElementById('token');
    saveToken(input.value.trim(), document.getElementById('remember').checked);
    input.value = '';
    state.auth = '';
    render();
    kickAll();
  });
  document.getElementById('forget').addEventListener('click', () => {
    forgetToken();
    kickAll();
    render();
  });
  window.addEventListener('hashchange', route);
  route();
  kickAll();
  follow();
})();
