// Drawing the faces over the image and listing them.
export function drawFaces(canvas, source, width, height, faces) {
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(source, 0, 0, width, height);
  ctx.lineWidth = Math.max(2, width / 320);
  ctx.font = `${Math.max(12, Math.round(width / 40))}px sans-serif`;
  for (const face of faces) {
    const [x, y, w, h] = face.box;
    ctx.strokeStyle = "#00e070";
    ctx.strokeRect(x, y, w, h);
    const text = `${face.emotion} ${(face.confidence * 100).toFixed(0)}%`;
    const tw = ctx.measureText(text).width;
    ctx.fillStyle = "rgba(0, 0, 0, 0.6)";
    ctx.fillRect(x, Math.max(0, y - 18), tw + 8, 18);
    ctx.fillStyle = "#fff";
    ctx.fillText(text, x + 4, Math.max(14, y - 4));
  }
}

export function listFaces(list, faces) {
  list.replaceChildren(
    ...faces.map((face) => {
      const item = document.createElement("li");
      const top = Object.entries(face.scores)
        .sort((a, b) => b[1] - a[1])
        .slice(0, 3)
        .map(([k, v]) => `${k} ${v.toFixed(3)}`)
        .join(", ");
      item.textContent = `${face.emotion} at [${face.box.join(", ")}]: ${top}`;
      item.className = "face";
      return item;
    })
  );
}
