/*
 * mtls CA inventory page: reads ca serve's /v1/inventory endpoints (same
 * origin, the admin's client certificate) and /v1/rotation. Every value
 * from the server reaches the page through textContent or an SVG
 * attribute set by the DOM API: never innerHTML, never a string parsed as
 * markup. The view is the URL's fragment: #timeline, #expiring=7d, #rate,
 * #revocations, #identity=<id>, #search=<text> (arguments
 * percent-encoded), so each view has its own address.
 */
'use strict';

const VIEWS = ['timeline', 'expiring', 'rate', 'revocations', 'identity', 'search'];
const SVGNS = 'http://www.w3.org/2000/svg';
let summary = null;
let pending = 0;

function $(id) { return document.getElementById(id); }

function setStatus(state, text) {
	const s = $('status');
	s.dataset.state = state;
	s.textContent = text;
}

/* GET a JSON endpoint of this server; rejects with the server's message */
async function api(path) {
	pending++;
	try {
		const r = await fetch(path, { credentials: 'same-origin', cache: 'no-store' });
		let body = null;
		try { body = await r.json(); } catch (e) { body = null; }
		if (!r.ok) {
			const err = new Error((body && body.message) ? body.message : ('HTTP ' + r.status));
			err.status = r.status;
			throw err;
		}
		return body;
	} finally {
		pending--;
	}
}

function el(tag, text, cls) {
	const e = document.createElement(tag);
	if (text !== undefined && text !== null) e.textContent = String(text);
	if (cls) e.className = cls;
	return e;
}

function svg(tag, attrs) {
	const e = document.createElementNS(SVGNS, tag);
	for (const k of Object.keys(attrs)) e.setAttribute(k, String(attrs[k]));
	return e;
}

function isoTime(t) {
	return new Date(t * 1000).toISOString().replace('.000Z', 'Z');
}

function human(secs) {
	if (secs <= 0) return 'expired';
	if (secs < 3600) return Math.floor(secs / 60) + ' min';
	if (secs < 2 * 86400) return Math.floor(secs / 3600) + ' h';
	return Math.floor(secs / 86400) + ' d';
}

function clear(node) {
	while (node.firstChild) node.removeChild(node.firstChild);
}

/* Bars (one series, or two stacked) with threshold marks at bucket
 * positions: marks = [{at: buckets, label, cls}] */
function barChart(holder, series, marks, labelEvery, unit) {
	clear(holder);
	const n = series[0].values.length;
	const W = 900, H = 170, L = 40, B = 20, T = 14;
	const bw = (W - L - 10) / n;
	let max = 1;
	for (let i = 0; i < n; i++) {
		let sum = 0;
		for (const s of series) sum += s.values[i];
		if (sum > max) max = sum;
	}
	const s = svg('svg', { width: W, height: H, viewBox: '0 0 ' + W + ' ' + H, role: 'img' });
	s.appendChild(svg('line', { x1: L, y1: H - B, x2: W - 10, y2: H - B, stroke: '#999' }));
	const top = svg('text', { x: 2, y: T + 4 });
	top.textContent = String(max);
	s.appendChild(top);
	for (let i = 0; i < n; i++) {
		let y = H - B;
		for (const se of series) {
			const v = se.values[i];
			if (v <= 0) continue;
			const h = (H - B - T) * v / max;
			y -= h;
			const r = svg('rect', { x: (L + i * bw + 1).toFixed(1), y: y.toFixed(1),
				width: Math.max(bw - 2, 1).toFixed(1), height: h.toFixed(1), 'class': 'bar ' + se.cls });
			const tip = svg('title', {});
			tip.textContent = se.name + ': ' + v + ' (' + unit + ' ' + (i + 1) + ')';
			r.appendChild(tip);
			r.dataset.count = String(v);
			s.appendChild(r);
		}
		if (i % labelEvery === 0) {
			const t = svg('text', { x: (L + i * bw).toFixed(1), y: H - 6 });
			t.textContent = String(i);
			s.appendChild(t);
		}
	}
	for (const m of marks) {
		const x = (L + m.at * bw).toFixed(1);
		s.appendChild(svg('line', { x1: x, y1: T - 4, x2: x, y2: H - B, 'class': 'mark ' + m.cls }));
		const t = svg('text', { x: (parseFloat(x) + 3).toFixed(1), y: T, 'class': 'marklabel' });
		t.textContent = m.label;
		s.appendChild(t);
	}
	holder.appendChild(s);
}

function renderCounts(sm) {
	$('n-total').textContent = sm.counts.total;
	$('n-valid').textContent = sm.counts.valid;
	$('n-revoked').textContent = sm.counts.revoked;
	$('n-expired').textContent = sm.counts.expired;
	$('n-1d').textContent = sm.expiring_within['1d'];
	$('n-3d').textContent = sm.expiring_within['3d'];
	$('n-7d').textContent = sm.expiring_within['7d'];
}

function renderTimeline(sm) {
	const e = sm.expiry;
	barChart($('chart-hours'), [{ name: 'expiring', cls: '', values: e.hours.counts }],
		[{ at: 24, label: '1 d', cls: 'd1' }], 6, 'hour');
	barChart($('chart-days'), [{ name: 'expiring', cls: '', values: e.days.counts }],
		[{ at: 1, label: '1 d', cls: 'd1' }, { at: 3, label: '3 d', cls: 'd3' },
		 { at: 7, label: '7 d', cls: 'd7' }], 5, 'day');
	barChart($('chart-weeks'), [{ name: 'expiring', cls: '', values: e.weeks.counts }],
		[{ at: 1, label: '7 d', cls: 'd7' }], 1, 'week');
}

function sum(a) { return a.reduce((x, y) => x + y, 0); }

function renderRate(sm) {
	const h = sm.issuance.hours, d = sm.issuance.days;
	$('rate-h-issued').textContent = sum(h.issued);
	$('rate-h-renewed').textContent = sum(h.renewed);
	$('rate-d-issued').textContent = sum(d.issued);
	$('rate-d-renewed').textContent = sum(d.renewed);
	barChart($('chart-rate-hours'), [{ name: 'issued', cls: 'issued', values: h.issued },
		{ name: 'renewed', cls: 'renewed', values: h.renewed }], [], 6, 'hour');
	barChart($('chart-rate-days'), [{ name: 'issued', cls: 'issued', values: d.issued },
		{ name: 'renewed', cls: 'renewed', values: d.renewed }], [], 5, 'day');
}

function idsCell(ids) {
	const td = el('td');
	ids.forEach((v, i) => {
		if (i) td.appendChild(document.createElement('br'));
		td.appendChild(document.createTextNode(v));
	});
	return td;
}

function statusOf(it) {
	return it.status === 'revoked' ? 'revoked (' + it.reason + ')' : it.status;
}

/* A paginated list: rows appended as pages arrive. */
function pager(table, moreBtn, url, rowFn) {
	const tb = table.tBodies[0];
	clear(tb);
	let cursor = null;
	async function page() {
		moreBtn.hidden = true;
		const d = await api(url + (cursor ? '&cursor=' + encodeURIComponent(cursor) : ''));
		for (const it of d.items) {
			const tr = rowFn(it, d.now);
			tr.className = it.status;
			tr.dataset.serial = it.serial;
			tb.appendChild(tr);
		}
		cursor = d.next_cursor;
		moreBtn.hidden = !cursor;
		return d;
	}
	moreBtn.onclick = () => { page().then(done, fail); };
	return page();
}

function serialCell(s) { return el('td', s, 'serial'); }

async function showExpiring(arg) {
	const within = ['1d', '3d', '7d'].includes(arg) ? arg : '7d';
	for (const b of document.querySelectorAll('#view-expiring .tabs button'))
		b.classList.toggle('active', b.dataset.within === within);
	$('exp-within').textContent = within;
	$('exp-count').textContent = summary ? summary.expiring_within[within] : '';
	await pager($('exp-table'), $('exp-more'),
		'/v1/inventory?state=expiring&expiring_within=' + within + '&limit=100', (it, now) => {
			const tr = el('tr');
			tr.append(serialCell(it.serial), idsCell(it.identities), el('td', isoTime(it.not_after)),
				el('td', human(it.not_after - now)));
			return tr;
		});
}

async function showRevocations() {
	const tb = $('rev-reasons').tBodies[0];
	clear(tb);
	const r = summary.revocations;
	for (const k of Object.keys(r).sort()) {
		const tr = el('tr');
		tr.dataset.reason = k;
		tr.append(el('td', k), el('td', r[k]));
		tb.appendChild(tr);
	}
	await pager($('rev-table'), $('rev-more'), '/v1/inventory?state=revoked&limit=100', (it) => {
		const tr = el('tr');
		tr.append(serialCell(it.serial), idsCell(it.identities), el('td', isoTime(it.revoked_at)),
			el('td', it.reason));
		return tr;
	});
}

async function showIdentity(arg) {
	$('id-input').value = arg || '';
	const tb = $('id-table').tBodies[0];
	clear(tb);
	$('id-title').textContent = arg ? '' : 'Give a SPIFFE ID, dns:NAME or ip:ADDRESS.';
	if (!arg) return;
	const d = await api('/v1/inventory/identity?id=' + encodeURIComponent(arg) + '&limit=500');
	$('id-title').textContent = d.items.length + ' certificate' + (d.items.length === 1 ? '' : 's') +
		' for ' + d.id + (d.truncated ? ' (the newest 500)' : '');
	for (const it of d.items) {
		const tr = el('tr');
		tr.className = it.status;
		tr.dataset.serial = it.serial;
		tr.append(serialCell(it.serial), el('td', isoTime(it.not_before)), el('td', isoTime(it.not_after)),
			el('td', statusOf(it)));
		tb.appendChild(tr);
	}
}

async function showSearch(arg) {
	$('q-input').value = arg || '';
	clear($('q-table').tBodies[0]);
	$('q-more').hidden = true;
	$('q-title').textContent = arg ? '' : 'A part of a SPIFFE ID or DNS name, or the start of a serial.';
	if (!arg) return;
	const d = await pager($('q-table'), $('q-more'), '/v1/inventory?q=' + encodeURIComponent(arg) + '&limit=100',
		(it) => {
			const tr = el('tr');
			const idc = idsCell(it.identities);
			tr.append(serialCell(it.serial), idc, el('td', isoTime(it.not_after)), el('td', statusOf(it)));
			return tr;
		});
	$('q-title').textContent = d.items.length + (d.next_cursor ? '+' : '') + ' found for ' + arg;
}

async function loadRotation() {
	let r;
	try {
		r = await api('/v1/rotation');
	} catch (e) {
		if (e.status === 404) { $('rotation').hidden = true; return; }
		throw e;
	}
	if (!r || !r.phase || r.phase === 'none') { $('rotation').hidden = true; return; }
	$('rot-phase').textContent = r.phase;
	$('rot-old').textContent = r.old_root || '';
	$('rot-new').textContent = r.new_root || '';
	$('rot-blocking').textContent = r.blocking_certs;
	$('rot-agents-old').textContent = r.agents_on_old_bundle;
	$('rot-agents-total').textContent = r.agents_total;
	$('rot-next').textContent = r.next_step || '';
	$('rotation').hidden = false;
}

function parseHash() {
	const h = location.hash.replace(/^#/, '');
	const i = h.indexOf('=');
	let view = i < 0 ? h : h.slice(0, i), arg = '';
	if (i >= 0) {
		try { arg = decodeURIComponent(h.slice(i + 1)); } catch (e) { arg = ''; }
	}
	if (!VIEWS.includes(view)) view = 'timeline';
	return { view, arg };
}

function done() {
	if (pending === 0) setStatus('ready', 'updated ' + new Date().toISOString().replace(/\.\d+Z$/, 'Z'));
}

function fail(e) {
	setStatus('error', 'error: ' + e.message);
}

async function show() {
	const { view, arg } = parseHash();
	setStatus('loading', 'loading');
	for (const v of VIEWS) $('view-' + v).hidden = v !== view;
	for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.dataset.view === view);
	document.title = 'mtls CA inventory: ' + view;
	if (summary === null) {
		summary = await api('/v1/inventory/summary');
		renderCounts(summary);
		renderTimeline(summary);
		renderRate(summary);
	}
	if (view === 'expiring') await showExpiring(arg);
	else if (view === 'revocations') await showRevocations();
	else if (view === 'identity') await showIdentity(arg);
	else if (view === 'search') await showSearch(arg);
}

function go(view, arg) {
	location.hash = view + (arg ? '=' + encodeURIComponent(arg) : '');
}

function init() {
	for (const b of document.querySelectorAll('#view-expiring .tabs button'))
		b.addEventListener('click', () => go('expiring', b.dataset.within));
	$('id-go').addEventListener('click', () => go('identity', $('id-input').value.trim()));
	$('q-go').addEventListener('click', () => go('search', $('q-input').value.trim()));
	$('id-input').addEventListener('keydown', (e) => { if (e.key === 'Enter') $('id-go').click(); });
	$('q-input').addEventListener('keydown', (e) => { if (e.key === 'Enter') $('q-go').click(); });
	window.addEventListener('hashchange', () => { show().then(done, fail); });
	Promise.all([show(), loadRotation()]).then(done, fail);
}

document.addEventListener('DOMContentLoaded', init);
