// The camera through /ws/realtime: frames are captured at a steady rate and handed to the realtime
// helper, which keeps one in flight and only the newest waiting; each answer is drawn over the video
// (each face with its track id), and each visitor's arrival is listed beside it, newest first.
import { clearFaces, renderFaces } from './draw.js';

const CAPTURE_FPS = 10;
// Frames are sent at most this wide: enough for faces across a room, light on the network.
const CAPTURE_MAX_WIDTH = 640;
const JPEG_QUALITY = 0.8;
const FPS_WINDOW_MS = 2000;
const ARRIVALS_KEPT = 50;

/** One arrival event as a list item: who, when, how sure, on which track. */
function arrivalItem(event) {
  const item = document.createElement('li');
  item.dataset.visitorId = event.visitor_id;
  item.dataset.trackId = event.track_id;
  const who = document.createElement('strong');
  who.textContent = event.visitor_id;
  const when = document.createElement('time');
  when.dateTime = event.at;
  when.textContent = new Date(event.at).toLocaleTimeString();
  const details = document.createElement('span');
  details.append(when, ` · ${event.confidence.toFixed(2)} · track ${event.track_id}`);
  item.append(who, details);
  return item;
}

export function setupLive(elements, getClient) {
  const { section, start, stop, connection, video, overlay, labels, arrivals, fps, latency, serviceLatency, firstName, error } = elements;
  const capture = document.createElement('canvas');
  let stream = null;
  let realtime = null;
  let timer = null;
  let firstFrameAt = null;
  let answeredAt = [];

  const setConnection = (text, kind) => {
    connection.textContent = text;
    connection.className = `pill ${kind}`;
  };
  const showError = (message) => {
    error.textContent = message;
    error.hidden = !message;
  };

  const captureFrame = () => {
    if (!realtime?.connected || video.videoWidth === 0) return;
    const scale = Math.min(1, CAPTURE_MAX_WIDTH / video.videoWidth);
    const width = Math.round(video.videoWidth * scale);
    const height = Math.round(video.videoHeight * scale);
    if (capture.width !== width) capture.width = width;
    if (capture.height !== height) capture.height = height;
    capture.getContext('2d').drawImage(video, 0, 0, width, height);
    realtime.send(capture.toDataURL('image/jpeg', JPEG_QUALITY));
    firstFrameAt ??= performance.now();
  };

  const showResults = (results) => {
    renderFaces({ canvas: overlay, labels, faces: results.faces, width: capture.width, height: capture.height });
    const now = performance.now();
    answeredAt = answeredAt.filter((t) => now - t < FPS_WINDOW_MS);
    answeredAt.push(now);
    fps.textContent = (answeredAt.length / (FPS_WINDOW_MS / 1000)).toFixed(1);
    if (results.roundTripMs !== null) latency.textContent = `${results.roundTripMs} ms`;
    serviceLatency.textContent = `${Math.round(results.latency_ms)} ms`;
    if (section.dataset.firstNameMs === undefined && firstFrameAt !== null && results.faces.some((f) => f.matched)) {
      const elapsed = Math.round(now - firstFrameAt);
      section.dataset.firstNameMs = String(elapsed);
      firstName.textContent = elapsed < 1000 ? `${elapsed} ms` : `${(elapsed / 1000).toFixed(1)} s`;
    }
  };

  const connect = () => {
    realtime = getClient().realtime();
    realtime.on('open', () => {
      setConnection('connected', 'ok');
      showError('');
    });
    realtime.on('results', showResults);
    realtime.on('event', (event) => {
      arrivals.prepend(arrivalItem(event));
      while (arrivals.children.length > ARRIVALS_KEPT) arrivals.lastElementChild.remove();
    });
    realtime.on('close', ({ reconnectInMs }) => {
      if (reconnectInMs === null) setConnection('off', '');
      else setConnection(`reconnecting in ${(reconnectInMs / 1000).toFixed(1)} s`, 'waiting');
    });
    realtime.on('error', ({ error: failure }) => {
      // Frames the service could not use are routine in a live feed; connection problems are not.
      if (failure.code !== 'invalid_image') showError(`${failure.message} (${failure.code})`);
    });
    setConnection('connecting…', 'waiting');
    realtime.connect();
  };

  const halt = () => {
    clearInterval(timer);
    timer = null;
    realtime?.close();
    realtime = null;
    stream?.getTracks().forEach((track) => track.stop());
    stream = null;
    video.srcObject = null;
    clearFaces({ canvas: overlay, labels });
    section.dataset.state = 'idle';
    start.disabled = false;
    stop.disabled = true;
    setConnection('off', '');
  };

  start.addEventListener('click', async () => {
    showError('');
    if (!navigator.mediaDevices?.getUserMedia) {
      showError('This browser gives no camera to this page: open it over https or on localhost.');
      return;
    }
    start.disabled = true;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 1280 }, facingMode: 'user' }, audio: false });
    } catch (failure) {
      start.disabled = false;
      showError(`No camera: ${failure.message}`);
      return;
    }
    video.srcObject = stream;
    await video.play();
    section.dataset.state = 'running';
    delete section.dataset.firstNameMs;
    firstFrameAt = null;
    answeredAt = [];
    firstName.textContent = '–';
    stop.disabled = false;
    connect();
    timer = setInterval(captureFrame, 1000 / CAPTURE_FPS);
  });
  stop.addEventListener('click', halt);

  return {
    /** A new API key: reconnect with it if the camera is running. */
    reconnect() {
      if (!realtime) return;
      realtime.close();
      connect();
    },
  };
}
