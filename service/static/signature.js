// The drawn signature of the portal's signing page: pointer events (finger, stylus, mouse)
// draw on the canvas; the drawing goes in the form as a PNG data URL. Without JavaScript the
// typed name still works.
document.querySelectorAll("[data-signature]").forEach((form) => {
  const canvas = form.querySelector("[data-pad]");
  const value = form.querySelector("[data-pad-value]");
  const clear = form.querySelector("[data-pad-clear]");
  const modes = form.querySelectorAll('input[name="mode"]');
  const pen = canvas.getContext("2d");
  let drawing = false;
  let drawn = false;

  const showMode = () => {
    const mode = form.querySelector('input[name="mode"]:checked').value;
    form.querySelectorAll("[data-mode]").forEach((part) => {
      part.hidden = part.dataset.mode !== mode;
    });
  };
  modes.forEach((radio) => radio.addEventListener("change", showMode));
  showMode();

  const point = (event) => {
    const box = canvas.getBoundingClientRect();
    return {
      x: ((event.clientX - box.left) * canvas.width) / box.width,
      y: ((event.clientY - box.top) * canvas.height) / box.height,
    };
  };
  pen.lineWidth = 3;
  pen.lineCap = "round";
  pen.lineJoin = "round";
  pen.strokeStyle = "#1a237e";

  canvas.addEventListener("pointerdown", (event) => {
    event.preventDefault();
    canvas.setPointerCapture(event.pointerId);
    drawing = true;
    const at = point(event);
    pen.beginPath();
    pen.moveTo(at.x, at.y);
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    event.preventDefault();
    const at = point(event);
    pen.lineTo(at.x, at.y);
    pen.stroke();
    drawn = true;
  });
  const stop = () => {
    if (!drawing) return;
    drawing = false;
    if (drawn) value.value = canvas.toDataURL("image/png");
  };
  canvas.addEventListener("pointerup", stop);
  canvas.addEventListener("pointercancel", stop);
  canvas.addEventListener("pointerleave", stop);

  clear.addEventListener("click", () => {
    pen.clearRect(0, 0, canvas.width, canvas.height);
    drawn = false;
    value.value = "";
  });
});
