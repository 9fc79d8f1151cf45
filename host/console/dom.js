// Building the page's elements without HTML strings (the CSP forbids inline
// handlers and styles; text is always set as text, never parsed as HTML).

/**
 * Creates an element: `h("a", {href: "#/usage", class: "link"}, "Usage")`.
 * Props starting with "on" become listeners; `true` sets a boolean attribute,
 * `false`/`null`/`undefined` leaves it out. Children may be nodes, strings,
 * numbers, arrays or nothing.
 */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  setProps(element, props);
  append(element, children);
  return element;
}

const SVG_NS = "http://www.w3.org/2000/svg";

/** Creates an SVG element (same props and children as `h`). */
export function s(tag, props = {}, ...children) {
  const element = document.createElementNS(SVG_NS, tag);
  setProps(element, props);
  append(element, children);
  return element;
}

function setProps(element, props) {
  for (const [name, value] of Object.entries(props ?? {})) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (name === "value" || name === "checked") {
      element[name] = value; // the live property, not the default
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
}

/** Appends children (nodes, text, arrays; null and false are skipped). */
export function append(parent, children) {
  for (const child of [children].flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

/** Replaces an element's children. */
export function replace(parent, ...children) {
  parent.replaceChildren();
  return append(parent, children);
}

/** "Loading…" as a polite live region. */
export function loading(text = "Loading…") {
  return h("p", { role: "status", class: "status" }, text);
}

/** A state in words (empty, done), as a polite live region. */
export function status(text) {
  return h("p", { role: "status", class: "status" }, text);
}

/** An error in the API's words, announced at once. */
export function alert(error) {
  const message = error instanceof Error ? error.message : String(error);
  return h("div", { role: "alert", class: "alert" }, message);
}

/** A labelled form control: `field("From", h("input", {type: "date"}))`. */
export function field(label, control, hint) {
  control.id ||= uniqueId("f");
  const hintNode = hint ? h("span", { class: "hint", id: uniqueId("h") }, hint) : null;
  if (hintNode) control.setAttribute("aria-describedby", hintNode.id);
  return h("div", { class: "field" }, h("label", { for: control.id }, label), control, hintNode);
}

/** A `<select>` of `[value, text]` pairs (or plain strings). */
export function select(props, options, selected) {
  return h(
    "select",
    props,
    options.map((option) => {
      const [value, text] = Array.isArray(option) ? option : [option, option];
      return h("option", { value, selected: value === selected }, text);
    }),
  );
}

/** A description list from `[term, detail]` pairs (empty details skipped). */
export function details(pairs, className = "facts") {
  return h(
    "dl",
    { class: className },
    pairs
      .filter(([, detail]) => detail !== null && detail !== undefined && detail !== "")
      .map(([term, detail]) => h("div", {}, h("dt", {}, term), h("dd", {}, detail))),
  );
}

let counter = 0;

/** An id unique in the page. */
export function uniqueId(prefix) {
  counter += 1;
  return `${prefix}-${counter}`;
}
