// Regard's console: the pages work without this script; it only adds conveniences.
// A page with <meta name="regard-refresh" content="SECONDS"> reloads itself (a job's progress).
document.addEventListener("DOMContentLoaded", () => {
  const refresh = document.querySelector('meta[name="regard-refresh"]');
  if (refresh) {
    setTimeout(() => window.location.reload(), 1000 * Number(refresh.content || 2));
  }
  // Forms that erase something ask first, with the words the page put in data-confirm.
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
});
