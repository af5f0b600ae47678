// A dropped or chosen photo: recognize it and draw every face with its visitor id and similarity.
import { renderFaces } from './draw.js';

async function loadPicture(file) {
  // An <img> applies the EXIF orientation, as the service does for its coordinates.
  const picture = new Image();
  const url = URL.createObjectURL(file);
  try {
    picture.src = url;
    await picture.decode();
    return picture;
  } finally {
    URL.revokeObjectURL(url);
  }
}

function summarise(faces) {
  if (faces.length === 0) return 'No face found.';
  const known = faces.filter((f) => f.matched).length;
  return `${faces.length} face${faces.length === 1 ? '' : 's'}, ${known} recognised visitor${known === 1 ? '' : 's'}.`;
}

function faceItem(face) {
  const item = document.createElement('li');
  const who = face.matched ? face.visitor_id : 'unknown';
  const similarity = typeof face.confidence === 'number' ? `similarity ${face.confidence.toFixed(3)}` : 'no visitors to compare';
  item.textContent = `${who}: ${similarity}, detector ${face.detection_confidence.toFixed(2)}`;
  return item;
}

export function setupPhoto(elements, getClient) {
  const { section, drop, input, stage, canvas, labels, summary, list, error } = elements;

  const analyse = async (file) => {
    section.dataset.state = 'loading';
    summary.textContent = `Looking at ${file.name}…`;
    list.replaceChildren();
    error.hidden = true;
    try {
      const [picture, answer] = await Promise.all([loadPicture(file), getClient().recognize(file)]);
      stage.hidden = false;
      renderFaces({ canvas, labels, faces: answer.faces, width: picture.naturalWidth, height: picture.naturalHeight, background: picture });
      stage.dataset.faceCount = String(answer.faces.length);
      summary.textContent = summarise(answer.faces);
      list.replaceChildren(...answer.faces.map(faceItem));
      section.dataset.state = 'done';
    } catch (failure) {
      section.dataset.state = 'error';
      summary.textContent = '';
      error.textContent = failure.code ? `${failure.message} (${failure.code})` : String(failure.message ?? failure);
      error.hidden = false;
    }
  };

  input.addEventListener('change', () => {
    const [file] = input.files;
    if (file) void analyse(file);
  });
  drop.addEventListener('dragover', (event) => {
    event.preventDefault();
    drop.classList.add('over');
  });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (event) => {
    event.preventDefault();
    drop.classList.remove('over');
    const [file] = event.dataTransfer.files;
    if (file) void analyse(file);
  });
}
