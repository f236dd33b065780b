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
});
