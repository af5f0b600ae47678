// Service and gallery status from /health, polled: models, visitors, cached faces, failed images,
// whether the gallery is syncing with the visitor tables.

const POLL_MS = 2000;

function syncText(gallery) {
  if (gallery.syncing) return 'syncing…';
  if (!gallery.last_sync_at) return 'not yet';
  return `in sync (${new Date(gallery.last_sync_at).toLocaleTimeString()})`;
}

export function startStatus(elements, getClient) {
  const show = (health) => {
    elements.section.dataset.status = health.status;
    elements.state.textContent = health.status;
    elements.reasons.textContent = health.reasons.join('; ');
    const { gallery, models } = health;
    elements.visitors.textContent = gallery ? String(gallery.visitors) : '–';
    elements.faces.textContent = gallery ? String(gallery.faces) : '–';
    elements.failed.textContent = gallery ? String(gallery.failed) : '–';
    elements.sync.textContent = gallery ? syncText(gallery) : '–';
    elements.database.textContent = gallery ? gallery.database + (gallery.error ? `: ${gallery.error}` : '') : '–';
    elements.models.textContent = models ? `${models.detector} + ${models.recognizer}, match threshold ${models.match_threshold}` : 'models loading…';
  };

  const poll = async () => {
    try {
      show(await getClient().health({ timeoutMs: POLL_MS * 2 }));
    } catch (error) {
      elements.section.dataset.status = 'down';
      elements.state.textContent = 'unreachable';
      elements.reasons.textContent = error.message;
    } finally {
      setTimeout(poll, POLL_MS);
    }
  };
  void poll();
}
