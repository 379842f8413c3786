"""Image work on the printed sheets: masks, colour, lens, scale and sheet detection."""
