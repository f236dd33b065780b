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
  const tick = () => document.querySelectorAll('.countdown').forEach((c) => {
    const s = Math.max(0, Math.round(Number(c.dataset.epoch) - Date.now() / 1000));
    c.textContent = s > 0 ? `(in ${Math.floor(s / 60)} min ${s % 60} s)` : '(expired)';
  });
  tick(); setInterval(tick, 1000);
});
