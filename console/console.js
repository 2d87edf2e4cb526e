// verdict console: sort any table by a column, export it as CSV, and draw
// the Health and Impact charts with Debian's Chart.js.  The pages read
// without it.
'use strict';

function cellText(cell) { return cell.textContent.trim(); }

function sortBy(table, col, button) {
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  var asc = button.getAttribute('data-dir') !== 'asc';
  rows.sort(function (a, b) {
    var x = cellText(a.cells[col]), y = cellText(b.cells[col]);
    var nx = parseFloat(x), ny = parseFloat(y);
    var r = (!isNaN(nx) && !isNaN(ny) && String(nx) === x.split(' ')[0] &&
             String(ny) === y.split(' ')[0]) ? nx - ny : x.localeCompare(y);
    return asc ? r : -r;
  });
  rows.forEach(function (r) { body.appendChild(r); });
  table.querySelectorAll('th').forEach(function (th) {
    th.removeAttribute('aria-sort');
  });
  button.setAttribute('data-dir', asc ? 'asc' : 'desc');
  button.parentNode.setAttribute('aria-sort', asc ? 'ascending' : 'descending');
}

function csvOf(table) {
  var lines = [];
  Array.prototype.forEach.call(table.rows, function (row) {
    var cells = Array.prototype.map.call(row.cells, function (c) {
      var t = cellText(c).replace(/\s+/g, ' ');
      return /[",\n]/.test(t) ? '"' + t.replace(/"/g, '""') + '"' : t;
    });
    lines.push(cells.join(','));
  });
  return lines.join('\r\n') + '\r\n';
}

function exportCsv(table) {
  var blob = new Blob([csvOf(table)], { type: 'text/csv' });
  var a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = (table.id || 'table') + '.csv';
  document.body.appendChild(a);
  a.click();
  a.remove();
}

function equip(table) {
  var heads = table.tHead ? table.tHead.rows[0].cells : [];
  Array.prototype.forEach.call(heads, function (th, i) {
    var b = document.createElement('button');
    b.type = 'button';
    b.textContent = th.textContent;
    b.title = 'Sort by ' + th.textContent;
    b.addEventListener('click', function () { sortBy(table, i, b); });
    th.textContent = '';
    th.appendChild(b);
  });
  var tools = document.createElement('div');
  tools.className = 'tools';
  var e = document.createElement('button');
  e.type = 'button';
  e.className = 'csv';
  e.textContent = 'Export as CSV';
  e.addEventListener('click', function () { exportCsv(table); });
  tools.appendChild(e);
  table.parentNode.insertBefore(tools, table);
}

function drawRate() {
  var canvas = document.getElementById('rate');
  var table = document.getElementById('rate-table');
  if (!canvas || !table || typeof Chart === 'undefined') return;
  var labels = [], rate = [], errs = [];
  Array.prototype.forEach.call(table.tBodies[0].rows, function (r) {
    labels.push(cellText(r.cells[0]).slice(11, 19));
    rate.push(parseFloat(cellText(r.cells[1])));
    errs.push(parseFloat(cellText(r.cells[2])));
  });
  new Chart(canvas, {
    type: 'line',
    data: { labels: labels, datasets: [
      { label: 'decisions per second', data: rate, borderColor: '#0b3d60',
        yAxisID: 'y' },
      { label: 'error rate (%)', data: errs, borderColor: '#b91c1c',
        yAxisID: 'y1' }] },
    options: { animation: false, responsive: false,
      scales: { y: { beginAtZero: true, position: 'left' },
                y1: { beginAtZero: true, position: 'right', max: 100 } } }
  });
}

function drawHist() {
  var canvas = document.getElementById('hist');
  var table = document.getElementById('impact-hist');
  if (!canvas || !table || typeof Chart === 'undefined') return;
  var labels = [], counts = [];
  Array.prototype.forEach.call(table.tBodies[0].rows, function (r) {
    labels.push(cellText(r.cells[0]));
    counts.push(parseInt(cellText(r.cells[1]), 10));
  });
  new Chart(canvas, {
    type: 'bar',
    data: { labels: labels, datasets: [
      { label: 'decisions', data: counts, backgroundColor: '#0b3d60' }] },
    options: { animation: false, responsive: false,
      scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } }
  });
}

document.addEventListener('DOMContentLoaded', function () {
  document.querySelectorAll('table.data').forEach(equip);
  if (document.getElementById('rate') || document.getElementById('hist')) {
    var s = document.createElement('script');
    s.src = '/console/chart.js';
    s.onload = function () { drawRate(); drawHist(); };
    document.head.appendChild(s);
  }
});
