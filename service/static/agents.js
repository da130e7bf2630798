// The beneficiary designation form (/adherent): add and remove named beneficiaries, the live
// total of their shares, the named rows shown only with the specific clause. Without script the
// form still works: its blank rows are ignored and the server checks everything.
(() => {
  const form = document.getElementById("designation");
  if (!form) return;
  const rows = document.getElementById("rows");
  const named = document.getElementById("named");
  const total = document.getElementById("total");
  const specific = document.getElementById("clause-specific");

  const number = (text) => {
    const value = parseFloat(String(text).replace(/\s/g, "").replace(",", "."));
    return Number.isFinite(value) ? value : 0;
  };
  const french = (value) =>
    value.toLocaleString("fr-FR", { minimumFractionDigits: 2, maximumFractionDigits: 2 }) + "\u00a0%";

  const update = () => {
    const cents = Array.from(rows.querySelectorAll("[data-share]"))
      .map((input) => Math.round(number(input.value) * 100))
      .reduce((a, b) => a + b, 0);
    total.textContent = french(cents / 100);
    total.classList.toggle("error", cents !== 10000);
    named.hidden = !specific.checked;
    rows.querySelectorAll("[data-remove]").forEach((button) => {
      button.hidden = rows.children.length < 2;
    });
  };

  let counter = rows.children.length;
  const renumber = (row) => {
    counter += 1;
    row.querySelectorAll("input, select").forEach((input) => {
      const id = input.name + "-" + counter;
      row.querySelector(`label[for="${input.id}"]`).setAttribute("for", id);
      input.id = id;
      input.value = input.tagName === "SELECT" ? input.options[0].value : "";
    });
  };

  document.getElementById("add-row").addEventListener("click", () => {
    const row = rows.lastElementChild.cloneNode(true);
    renumber(row);
    rows.appendChild(row);
    row.querySelector("input").focus();
    update();
  });
  rows.addEventListener("click", (event) => {
    const button = event.target.closest("[data-remove]");
    if (!button || rows.children.length < 2) return;
    button.closest("[data-row]").remove();
    update();
  });
  form.addEventListener("input", update);
  form.addEventListener("change", update);
  update();
})();
