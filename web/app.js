// The demo page: gallery status, live camera recognition and photo recognition, all through the
// typed client served by the service at /client/.
import { createClient } from '/client/index.js';
import { setupLive } from './live.js';
import { setupPhoto } from './photo.js';
import { startStatus } from './status.js';

const KEY_STORAGE = 'face-recog.apiKey';
const byId = (id) => document.getElementById(id);

let client = createClient({ apiKey: localStorage.getItem(KEY_STORAGE) || undefined });
const getClient = () => client;

startStatus(
  {
    section: byId('status'),
    state: byId('service-state'),
    reasons: byId('service-reasons'),
    visitors: byId('gallery-visitors'),
    faces: byId('gallery-faces'),
    failed: byId('gallery-failed'),
    sync: byId('gallery-sync'),
    database: byId('gallery-database'),
    models: byId('service-models'),
  },
  getClient,
);

const live = setupLive(
  {
    section: byId('live'),
    start: byId('live-start'),
    stop: byId('live-stop'),
    connection: byId('live-connection'),
    video: byId('live-video'),
    overlay: byId('live-overlay'),
    labels: byId('live-labels'),
    arrivals: byId('live-arrivals'),
    fps: byId('live-fps'),
    latency: byId('live-latency'),
    serviceLatency: byId('live-service-latency'),
    firstName: byId('live-first-name'),
    error: byId('live-error'),
  },
  getClient,
);

setupPhoto(
  {
    section: byId('photo'),
    drop: byId('photo-drop'),
    input: byId('photo-file'),
    stage: byId('photo-stage'),
    canvas: byId('photo-canvas'),
    labels: byId('photo-labels'),
    summary: byId('photo-summary'),
    list: byId('photo-faces'),
    error: byId('photo-error'),
  },
  getClient,
);

const keyInput = byId('api-key');
keyInput.value = localStorage.getItem(KEY_STORAGE) ?? '';
byId('key-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const key = keyInput.value.trim();
  if (key) localStorage.setItem(KEY_STORAGE, key);
  else localStorage.removeItem(KEY_STORAGE);
  client = createClient({ apiKey: key || undefined });
  live.reconnect();
});
