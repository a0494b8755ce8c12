// The console's only script: category choices follow the domain, charts show their values on
// hover, and withdrawing or rejecting asks for confirmation. Pages work without it.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const domain = document.getElementById("domain");
  const category = document.getElementById("category");
  if (domain && category) {
    const sync = () => {
      for (const option of category.options) {
        option.hidden = domain.value !== "" && option.dataset.domain !== domain.value;
      }
      const selected = category.selectedOptions[0];
      if (selected && selected.hidden) {
        const first = [...category.options].find((o) => !o.hidden);
        if (first) first.selected = true;
      }
    };
    domain.addEventListener("change", sync);
    sync();
  }
  const tip = document.createElement("div");
  tip.id = "tip";
  document.body.appendChild(tip);
  for (const mark of document.querySelectorAll("svg.chart [data-value]")) {
    mark.addEventListener("mousemove", (event) => {
      const title = mark.querySelector("title");
      tip.textContent = title ? title.textContent : mark.dataset.value;
      tip.style.left = `${event.clientX + 12}px`;
      tip.style.top = `${event.clientY + 12}px`;
      tip.style.display = "block";
    });
    mark.addEventListener("mouseleave", () => { tip.style.display = "none"; });
  }
  for (const button of document.querySelectorAll("button[data-action=reject]")) {
    button.addEventListener("click", (event) => {
      if (!window.confirm(`Reject ${button.dataset.item}? It will never be recommended.`)) {
        event.preventDefault();
      }
    });
  }
});
