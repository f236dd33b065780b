// Copy buttons and expiry countdowns. No inline scripts (the CSP forbids them).
document.addEventListener('DOMContentLoaded', () => {
  document.querySelectorAll('button.copy').forEach((b) => {
    b.addEventListener('click', async () => {
      const text = document.getElementById(b.dataset.copy).textContent;
      try { await navigator.clipboard.writeText(text); b.textContent = 'Copied'; }
      catch (e) { b.textContent = 'Select and copy'; }
      setTimeout(() => { b.textContent = 'Copy'; }, 1500);
    });
  });
  document.querySelectorAll('time.expiry').forEach((t) => {
    const d = new Date(Number(t.dataset.epoch) * 1000);
    t.title = d.toISOString(); t.textContent = d.toLocaleString();
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
  document.querySelectorAll('button.tab').forEach((t) => {
    t.addEventListener('click', () => {
      document.querySelectorAll('button.tab').forEach((o) => o.classList.toggle('active', o === t));
      document.querySelectorAll('.tabpanel').forEach((p) => { p.hidden = p.id !== `panel-${t.dataset.tab}`; });
    });
  });
  const tick = () => document.querySelectorAll('.countdown').forEach((c) => {
    const s = Math.max(0, Math.round(Number(c.dataset.epoch) - Date.now() / 1000));
    c.textContent = s > 0 ? `(in ${Math.floor(s / 60)} min ${s % 60} s)` : '(expired)';
  });
  tick(); setInterval(tick, 1000);

  // Auto-submitting forms (SAML POST to AWS sign-in, /go links): a button stays as the fallback.
  document.querySelectorAll('form.autosubmit').forEach((f) => f.submit());
  portal();
});

// The portal: duration choosers, Console / Credentials / Copy link / favourite, and the filter
// (in the page, no round trip). Rows carry data-g (grant id), data-m (max) and data-d (default).
function portal() {
  const act = document.getElementById('act');
  if (!act) return;
  const steps = [900, 1800, 3600, 7200, 14400, 28800, 43200];
  const human = (s) => { const h = Math.floor(s / 3600); const m = Math.floor((s % 3600) / 60);
    return [h ? `${h} h` : '', m ? `${m} min` : ''].filter(Boolean).join(' ') || `${s} s`; };
  const rows = Array.from(document.querySelectorAll('li.role[data-g]'));
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
  const actions = document.getElementById('row-actions').content.firstElementChild;
  rows.forEach((li) => {
    const acts = actions.cloneNode(true);
    acts.prepend(chooser(Number(li.dataset.m || 3600), Number(li.dataset.d || 3600)));
    if ('f' in li.dataset) acts.querySelector('button.f').classList.add('on');
    li.append(acts);
  });
  document.addEventListener('click', async (e) => {
    const b = e.target.closest('li.role[data-g] button'); if (!b) return;
    const li = b.closest('li'); const id = li.dataset.g;
    if (b.classList.contains('c') || b.classList.contains('k')) {
      act.action = `/${b.classList.contains('c') ? 'console' : 'credentials'}/${id}`;
      act.elements.duration.value = li.querySelector('select.dur').value;
      act.submit();
    } else if (b.classList.contains('l')) {
      const url = new URL(li.querySelector('a').getAttribute('href'), act.dataset.base || location.href).href;
      try { await navigator.clipboard.writeText(url); b.textContent = 'Copied'; }
      catch (err) { window.prompt('Copy this link', url); }
      setTimeout(() => { b.textContent = 'Copy link'; }, 1500);
    } else if (b.classList.contains('f')) {
      const r = await fetch(`/portal/favourite/${id}`, { method: 'POST', credentials: 'same-origin',
        headers: { 'X-CSRF-Token': act.elements.csrf_token.value, Accept: 'application/json' } });
      if (r.ok) { const on = (await r.json()).favourite;
        document.querySelectorAll(`li.role[data-g="${id}"] button.f`).forEach((x) => x.classList.toggle('on', on)); }
    }
  });
  // Filter: the search text of each row is built once; a keystroke only flips `hidden` where it changes.
  const filter = document.getElementById('filter');
  const count = document.getElementById('filter-count');
  const sections = Array.from(document.querySelectorAll('section.account, section.quick')).map((sec) => {
    const head = sec.querySelector('h2').textContent.toLowerCase();
    const items = Array.from(sec.querySelectorAll('li.role')).map((li) => ({
      li, text: `${head} ${li.querySelector('a').textContent} ${li.querySelector('code').textContent}`.toLowerCase(),
      shown: true }));
    return { sec, items, shown: true, head };
  });
  const apply = () => {
    const words = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
    let n = 0;
    sections.forEach((s) => {
      const hits = s.items.map((it) => words.every((w) => it.text.includes(w)));
      const any = hits.includes(true);
      // Rows of a section that is hidden are not touched (they are invisible anyway): a keystroke that
      // hides 900 accounts writes 900 attributes, not 5,400. They are brought up to date when shown.
      if (any) {
        s.items.forEach((it, i) => { if (hits[i] !== it.shown) { it.li.hidden = !hits[i]; it.shown = hits[i]; } });
        n += hits.filter(Boolean).length;
      }
      if (any !== s.shown) { s.sec.hidden = !any; s.shown = any; }
    });
    count.textContent = words.length ? `${n} shown` : '';
  };
  filter.addEventListener('input', apply);
  filter.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') { const first = rows.find((li) => !li.hidden && !li.closest('section').hidden);
      if (first) { e.preventDefault(); first.querySelector('button.c').click(); } }
  });
  if (!document.querySelector('.quick')) filter.focus();
}

