// The index names this server's own address in its examples.
'use strict';
for (const e of document.querySelectorAll('.origin')) e.textContent = location.origin;
