// Swipe a review card right to approve it, left to reject it: the swipe presses the card's
// button, so it does exactly what the button does. Vertical scrolling is left alone.
"use strict";

document.documentElement.classList.add("js");

const THRESHOLD = 96; // px: shorter drags spring back

for (const card of document.querySelectorAll(".review")) {
  const form = card.querySelector("form.decisions");
  const approve = form.querySelector('button[value="approve"]');
  const reject = form.querySelector('button[value="reject"]');
  let startX = null;
  let dx = 0;

  card.addEventListener("pointerdown", (event) => {
    if (event.target.closest("button, select, input, label")) return;
    startX = event.clientX;
    dx = 0;
    card.setPointerCapture(event.pointerId);
    card.classList.add("swiping");
  });
  card.addEventListener("pointermove", (event) => {
    if (startX === null) return;
    dx = event.clientX - startX;
    card.style.transform = `translateX(${dx}px)`;
    card.classList.toggle("toward-approve", dx > THRESHOLD && approve !== null);
    card.classList.toggle("toward-reject", dx < -THRESHOLD);
  });
  const release = (decide) => {
    if (startX === null) return;
    startX = null;
    card.classList.remove("swiping", "toward-approve", "toward-reject");
    const button = !decide ? null : dx > THRESHOLD ? approve : dx < -THRESHOLD ? reject : null;
    if (button) {
      form.requestSubmit(button);
    } else {
      card.style.transform = "";
    }
  };
  card.addEventListener("pointerup", () => release(true));
  card.addEventListener("pointercancel", () => release(false)); // the browser scrolls instead
}
