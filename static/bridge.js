// Federation Bridge pages: copy, download, format tabs, expiry countdowns, the portal.
// No inline scripts (the CSP forbids them); every page also works without this file.
const announce = (text) => {
  const live = document.getElementById('announce');
  if (!live) return;
  live.textContent = '';
  setTimeout(() => { live.textContent = text; }, 50); // a change, so screen readers speak it again
};

const copyText = async (text, button, label) => {
  try { await navigator.clipboard.writeText(text); button.textContent = 'Copied'; announce('Copied to the clipboard'); }
  catch (e) { window.prompt('Copy this', text); }
  setTimeout(() => { button.textContent = label; }, 1500);
};

document.addEventListener('DOMContentLoaded', () => {
  document.querySelectorAll('button.copy').forEach((b) => {
    b.addEventListener('click', () => copyText(document.getElementById(b.dataset.copy).textContent, b, 'Copy'));
  });
  const today = new Date().toDateString();
  document.querySelectorAll('time.expiry').forEach((t) => {
    const d = new Date(Number(t.dataset.epoch) * 1000);
    t.dateTime = d.toISOString(); t.title = d.toString();
    const short = t.classList.contains('short');
    t.textContent = short && d.toDateString() === today
      ? d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
      : d.toLocaleString([], short ? { dateStyle: 'short', timeStyle: 'short' } : undefined);
  });
  document.querySelectorAll('button.download').forEach((b) => {
    b.addEventListener('click', () => {
      // Built in the page from what is shown: no secret ever travels in a URL.
      const blob = new Blob([document.getElementById(b.dataset.download).textContent], { type: 'text/plain' });
      const a = document.createElement('a');
      a.href = URL.createObjectURL(blob); a.download = b.dataset.filename;
      document.body.appendChild(a); a.click(); a.remove(); URL.revokeObjectURL(a.href);
    });
  });
  tabs();
  const tick = () => document.querySelectorAll('.countdown').forEach((c) => {
    const s = Math.max(0, Math.round(Number(c.dataset.epoch) - Date.now() / 1000));
    c.textContent = s > 0 ? `(in ${Math.floor(s / 60)} min ${s % 60} s)` : '(expired)';
    if (s === 0 && c.dataset.expire) expire(c.dataset.expire);
  });
  tick(); setInterval(tick, 1000);

  // Auto-submitting forms (SAML POST to AWS sign-in, /go and credentials links): a button stays as the
  // fallback. Not when coming Back to the page: that would sign in or issue again.
  const nav = performance.getEntriesByType && performance.getEntriesByType('navigation')[0];
  if (!nav || nav.type !== 'back_forward') document.querySelectorAll('form.autosubmit').forEach((f) => f.submit());
  portal();
});

// Credentials that expired while the page was open: the secrets go, Refresh comes forward.
function expire(selector) {
  const secrets = document.querySelector(selector);
  if (!secrets) return;
  secrets.remove();
  const note = document.getElementById('expired');
  if (note) note.hidden = false;
  const refresh = document.getElementById('refresh');
  if (refresh) refresh.classList.remove('secondary');
  announce('These credentials have expired');
}

// Credential formats as a tablist (arrow keys, Home/End); the first shown is the one for this OS.
function tabs() {
  const list = document.querySelector('[role=tablist]');
  if (!list) return;
  const all = Array.from(list.querySelectorAll('[role=tab]'));
  const select = (tab, focus) => {
    all.forEach((t) => {
      const on = t === tab;
      t.setAttribute('aria-selected', String(on)); t.tabIndex = on ? 0 : -1;
      document.getElementById(t.getAttribute('aria-controls')).hidden = !on;
    });
    if (focus) tab.focus();
  };
  const platform = ((navigator.userAgentData && navigator.userAgentData.platform) || navigator.platform || '').toLowerCase();
  const preferred = platform.startsWith('win') ? 'powershell' : 'env';
  select(all.find((t) => t.dataset.tab === preferred) || all[0], false);
  list.hidden = false;
  list.addEventListener('click', (e) => { const t = e.target.closest('[role=tab]'); if (t) select(t, false); });
  list.addEventListener('keydown', (e) => {
    const i = all.indexOf(document.activeElement);
    if (i < 0) return;
    const to = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: all.length - 1 }[e.key];
    if (to === undefined) return;
    e.preventDefault();
    select(all[(to + all.length) % all.length], true);
  });
}

// The portal: duration choosers, Console / Credentials links, Copy link, favourites, recent, and
// the filter (in the page, no round trip once the rows are there). Rows carry data-g (grant id),
// data-m (max) and data-d (default duration); their first link is the /go link. A large portal comes
// with its accounts collapsed and without their rows (bridge/web/portal_html.py): an account's rows are
// fetched when it is opened, every account's at the filter's first keystroke.
function portal() {
  const act = document.getElementById('act');
  if (!act) return;
  const steps = [900, 1800, 3600, 7200, 14400, 28800, 43200];
  const human = (s) => { const h = Math.floor(s / 3600); const m = Math.floor((s % 3600) / 60);
    return [h ? `${h} h` : '', m ? `${m} min` : ''].filter(Boolean).join(' ') || `${s} s`; };
  // One template select per (max, default) pair, cloned into each row (rows omit the 3600 defaults).
  const made = new Map();
  const chooser = (max, def) => {
    const key = `${max}/${def}`;
    if (!made.has(key)) {
      const sel = document.createElement('select'); sel.className = 'dur'; sel.setAttribute('aria-label', 'Duration');
      const opts = steps.filter((s) => s <= max); if (!opts.includes(max)) opts.push(max);
      opts.forEach((s) => sel.add(new Option(human(s), String(s), s === def, s === def)));
      made.set(key, sel);
    }
    return made.get(key).cloneNode(true);
  };
  const setLinks = (li) => {
    const d = li.querySelector('select.dur').value;
    const q = d === String(li.dataset.d || 3600) ? '' : `?duration=${d}`;
    li.querySelector('a.c').href = li.querySelector('a').getAttribute('href') + q;
    li.querySelector('a.k').href = `/credentials/${li.dataset.g}${q}`;
  };
  const actions = document.getElementById('row-actions').content.firstElementChild;
  const equip = (li) => { // once per row, when it is first shown
    if (li.querySelector('.acts')) return;
    const acts = actions.cloneNode(true);
    acts.prepend(chooser(Number(li.dataset.m || 3600), Number(li.dataset.d || 3600)));
    const label = li.querySelector('a').textContent;
    acts.querySelector('button.f').setAttribute('aria-label', `Favourite: ${label}`);
    if ('f' in li.dataset) acts.querySelector('button.f').setAttribute('aria-pressed', 'true');
    li.append(acts);
    setLinks(li);
  };
  const equipIn = (root) => root.querySelectorAll('li.role[data-g]').forEach(equip);
  equipIn(document);

  const favList = document.querySelector('#favourites ul');
  const recentList = document.querySelector('#recent ul');
  const cardOf = (li) => li.closest('details.account')
    || document.querySelector(`details.account[data-a="${CSS.escape(li.dataset.a || '')}"]`);
  const copyRow = (src) => { // a row for Favourites or Recent, saying which account (data-a for the filter)
    const li = src.cloneNode(true);
    li.hidden = false;
    if (!li.querySelector('small.in')) {
      const card = cardOf(src);
      li.dataset.a = card.dataset.a;
      const where = document.createElement('small');
      where.className = 'muted in';
      where.textContent = `in ${card.querySelector('summary h2').textContent}`;
      li.querySelector('a').after(' ', where);
    }
    return li;
  };
  const showQuick = () => {
    [favList, recentList].forEach((ul) => { ul.closest('section').hidden = !ul.children.length; });
    indexQuick();
  };
  const used = (src) => { // the role moves to the top of Recent now, as it will after a reload
    const old = recentList.querySelector(`li[data-g="${src.dataset.g}"]`);
    const li = old || copyRow(src);
    recentList.prepend(li);
    while (recentList.children.length > 10) recentList.lastElementChild.remove();
    showQuick();
  };
  document.addEventListener('change', (e) => {
    if (e.target.matches('li.role[data-g] select.dur')) setLinks(e.target.closest('li'));
  });
  document.addEventListener('auxclick', (e) => { // middle-click opens the link in a new tab
    const a = e.target.closest('li.role[data-g] .acts > a'); if (a && e.button === 1) setTimeout(() => used(a.closest('li')), 0);
  });
  document.addEventListener('click', async (e) => {
    const b = e.target.closest('li.role[data-g] .acts > *'); if (!b) return;
    const li = b.closest('li'); const id = li.dataset.g;
    if (b.matches('a.c, a.k')) {
      setTimeout(() => used(li), 0); // after the browser has taken the link
    } else if (b.classList.contains('l')) {
      copyText(new URL(li.querySelector('a.c').getAttribute('href'), act.dataset.base || location.href).href,
        b, 'Copy link');
    } else if (b.classList.contains('f')) {
      const r = await fetch(`/portal/favourite/${id}`, { method: 'POST', credentials: 'same-origin',
        headers: { 'X-CSRF-Token': act.elements.csrf_token.value, Accept: 'application/json' } });
      if (!r.ok) { announce('Could not change the favourite'); return; }
      const on = (await r.json()).favourite;
      document.querySelectorAll(`li.role[data-g="${id}"] button.f`).forEach((x) => x.setAttribute('aria-pressed', String(on)));
      const there = favList.querySelector(`li[data-g="${id}"]`);
      if (on && !there) favList.append(copyRow(li));
      if (!on && there) there.remove();
      showQuick();
      announce(on ? 'Added to favourites' : 'Removed from favourites');
    }
  });

  // Filter: the search text of each row is built once; a keystroke only flips `hidden` where it changes.
  // The count is of roles (rows under the accounts): a favourite or recent role is not counted twice.
  const filter = document.getElementById('filter');
  const count = document.getElementById('filter-count');
  const headOf = (details) => {
    const sum = details.querySelector('summary');
    return `${sum.querySelector('h2').textContent} ${sum.querySelector('small').textContent}`.toLowerCase();
  };
  const index = (sec) => {
    const quickSec = sec.classList.contains('quick');
    const head = quickSec ? '' : headOf(sec);
    const items = Array.from(sec.querySelectorAll('li.role')).map((li) => {
      const where = quickSec ? headOf(cardOf(li)) : head;
      return { li, text: `${where} ${li.querySelector('a').textContent} ${li.querySelector('code').textContent}`.toLowerCase(),
        shown: !li.hidden };
    });
    return { sec, items, shown: !sec.hidden, quick: quickSec, count: quickSec ? null : sec.querySelector('.count') };
  };
  const roles = (n) => `${n} role${n === 1 ? '' : 's'}`;
  const cards = new Map(Array.from(document.querySelectorAll('details.account')).map((d) => [d, index(d)]));
  let quick = [];
  let words = [];
  const apply = () => {
    let n = 0;
    quick.concat(Array.from(cards.values())).forEach((s) => {
      const hits = s.items.map((it) => words.every((w) => it.text.includes(w)));
      const any = !words.length || hits.includes(true); // (an account whose rows are not here yet stays)
      // Rows of a section that is hidden are not touched (they are invisible anyway): a keystroke that
      // hides 900 accounts writes 900 attributes, not 5,400. They are brought up to date when shown.
      if (any) {
        s.items.forEach((it, i) => { if (hits[i] !== it.shown) { it.li.hidden = !hits[i]; it.shown = hits[i]; } });
        const k = hits.filter(Boolean).length;
        if (!s.quick) n += k;
        // The account's own count says what the filter left of it: "1 of 4 roles", not "4 roles".
        if (s.count && s.items.length) s.count.textContent = words.length && k < s.items.length ? `${k} of ${roles(s.items.length)}` : roles(s.items.length);
        // The filter opens the accounts it finds roles in, and closes them again when it is cleared.
        if (words.length && !s.quick && !s.sec.open) { s.sec.open = true; s.opened = true; }
      }
      if (!words.length && s.opened) { s.sec.open = false; s.opened = false; }
      if (any !== s.shown) { s.sec.hidden = !any; s.shown = any; }
    });
    count.textContent = words.length ? `${roles(n)} shown` : '';
  };
  function indexQuick() {
    quick = Array.from(document.querySelectorAll('section.quick')).map(index);
    if (words.length) apply();
  }
  indexQuick();

  // Rows on demand: /portal/rows answers <ul data-a=…> groups, each moved into its account's card.
  const lazy = (d) => d.querySelector('li.lazy');
  const fill = (html) => {
    const t = document.createElement('template');
    t.innerHTML = html;
    t.content.querySelectorAll('ul[data-a]').forEach((ul) => {
      const d = document.querySelector(`details.account[data-a="${CSS.escape(ul.dataset.a)}"]`);
      if (!d || !lazy(d)) return; // not on this page, or already filled
      const list = d.querySelector('ul.roles');
      list.replaceChildren(...ul.children);
      list.removeAttribute('aria-busy');
      if (d.open) equipIn(list);
      Object.assign(cards.get(d), index(d)); // (keeps whether the filter opened it)
    });
  };
  const rowsOf = async (query) => {
    const r = await fetch(`/portal/rows${query}`, { credentials: 'same-origin', headers: { Accept: 'text/html' } });
    if (!r.ok || r.redirected) throw new Error(`rows: ${r.status}`); // redirected: the sign-in has ended
    return r.text();
  };
  const failed = () => {
    document.querySelectorAll('#accounts ul.roles[aria-busy]').forEach((list) => {
      list.removeAttribute('aria-busy');
      list.querySelector('li.lazy a').textContent = 'Could not load these roles: open this link to try again';
    });
    announce('Could not load the roles. Reload the page, or sign in again.');
  };
  const load = async (d) => {
    const list = d.querySelector('ul.roles');
    if (!lazy(d) || list.hasAttribute('aria-busy')) return;
    list.setAttribute('aria-busy', 'true');
    lazy(d).querySelector('a').textContent = 'Loading roles…';
    try { fill(await rowsOf(`?account=${encodeURIComponent(d.dataset.a)}`)); } catch (e) { failed(); }
  };
  let all = null; // every account's rows, fetched once (the filter searches them all)
  const loadAll = () => {
    if (!document.querySelector('#accounts li.lazy')) return Promise.resolve();
    if (!all) {
      count.textContent = 'Loading roles…';
      all = rowsOf('').then(fill).catch(() => { all = null; failed(); });
    }
    return all;
  };
  document.addEventListener('toggle', (e) => { // toggle does not bubble: caught on its way down
    const d = e.target;
    if (!(d instanceof HTMLDetailsElement) || !d.matches('details.account') || !d.open) return;
    if (lazy(d)) load(d); else equipIn(d);
  }, true);

  if (!filter) return;
  const search = () => {
    words = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
    if (words.length && document.querySelector('#accounts li.lazy')) loadAll().then(apply); else apply();
  };
  filter.addEventListener('input', search);
  filter.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && filter.value) { filter.value = ''; search(); }
    if (e.key !== 'Enter') return;
    // The top row on screen: the first row that is actually visible, favourites and recent included.
    const first = Array.from(document.querySelectorAll('li.role[data-g]')).find((li) => li.checkVisibility
      ? li.checkVisibility() : li.offsetParent !== null);
    if (first) { e.preventDefault(); equip(first); first.querySelector('a.c').click(); }
  });
  document.addEventListener('keydown', (e) => {
    if (e.key !== '/' || e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.target.closest('input, textarea, select, [contenteditable]')) return;
    e.preventDefault(); filter.focus(); filter.select();
  });
  if (document.getElementById('favourites').hidden && document.getElementById('recent').hidden) filter.focus();
}
