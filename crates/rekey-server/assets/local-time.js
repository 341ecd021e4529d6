// Connect pages: show each <time datetime> in the reader's own time zone.
// The server renders readable UTC, which stays as the hover title (and is
// what a reader without JavaScript sees).
document.querySelectorAll('time[datetime]').forEach((t) => {
  const d = new Date(t.getAttribute('datetime'));
  if (Number.isNaN(d.getTime())) return;
  if (!t.title) t.title = t.textContent.trim();
  t.textContent = d.toLocaleString(undefined, {
    year: 'numeric', month: 'short', day: 'numeric',
    hour: '2-digit', minute: '2-digit', timeZoneName: 'short',
  });
});
