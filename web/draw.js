// Faces over a picture: boxes and landmarks on a canvas, and for each face a text label (visitor id
// and similarity, and on the live camera its track id) positioned over it in HTML, so that it stays
// sharp, readable by screen readers, and checkable from the page's DOM.

const MATCH = '#16a34a';
const UNKNOWN = '#f59e0b';
// Right eye, left eye, nose tip, right mouth corner, left mouth corner.
const LANDMARK_COLOURS = ['#ff3b30', '#0a84ff', '#ffffff', '#af52de', '#ffcc00'];

/** What a face's label says: who (or "unknown") and how similar (a recognised face's `confidence`). */
export function describeFace(face) {
  if (face.matched && face.visitor_id) return `${face.visitor_id} ${face.confidence.toFixed(2)}`;
  if (typeof face.confidence === 'number') return `unknown (best ${face.confidence.toFixed(2)})`;
  return 'unknown';
}

/**
 * Draws `faces` (coordinates in pixels of a width x height picture) on `canvas`, over `background`
 * when given, and replaces the labels in `labels`.
 */
export function renderFaces({ canvas, labels, faces, width, height, background }) {
  if (canvas.width !== width) canvas.width = width;
  if (canvas.height !== height) canvas.height = height;
  const context = canvas.getContext('2d');
  context.clearRect(0, 0, width, height);
  if (background) context.drawImage(background, 0, 0, width, height);

  const line = Math.max(2, Math.round(Math.max(width, height) / 250));
  for (const face of faces) {
    const [x, y, w, h] = face.bbox;
    context.lineWidth = line;
    context.strokeStyle = face.matched ? MATCH : UNKNOWN;
    context.strokeRect(x, y, w, h);
    face.landmarks.forEach(([px, py], i) => {
      context.fillStyle = LANDMARK_COLOURS[i];
      context.beginPath();
      context.arc(px, py, line * 1.2, 0, 2 * Math.PI);
      context.fill();
    });
  }
  canvas.dataset.boxesDrawn = String(faces.length);

  labels.replaceChildren(
    ...faces.map((face, index) => {
      const label = document.createElement('span');
      label.className = 'face-label';
      const who = document.createElement('span');
      who.className = 'who';
      who.textContent = describeFace(face);
      label.append(who);
      if (face.track_id) {
        const track = document.createElement('span');
        track.className = 'track';
        track.textContent = `track ${face.track_id}`;
        label.append(track);
        label.dataset.trackId = face.track_id;
      }
      placeLabel(label, face.bbox, width, height);
      label.dataset.index = String(index);
      label.dataset.box = face.bbox.join(',');
      label.dataset.matched = String(Boolean(face.matched));
      if (face.visitor_id) label.dataset.visitorId = face.visitor_id;
      if (typeof face.confidence === 'number') label.dataset.similarity = String(face.confidence);
      return label;
    }),
  );
}

/** Above the box, kept inside the picture: below the box's top edge near the top, right-aligned near the right. */
function placeLabel(label, [x, y, w, h], width, height) {
  const percent = (value, of) => `${(100 * Math.min(Math.max(value, 0), of)) / of}%`;
  if (x + w / 2 > width * 0.6) label.style.right = percent(width - x - w, width);
  else label.style.left = percent(x, width);
  if (y > height * 0.1) label.style.top = percent(y, height);
  else {
    label.style.top = percent(y + h, height);
    label.classList.add('below');
  }
}

export function clearFaces({ canvas, labels }) {
  canvas.getContext('2d').clearRect(0, 0, canvas.width, canvas.height);
  canvas.dataset.boxesDrawn = '0';
  labels.replaceChildren();
}
