// A one-line progress display: redrawn in place on a terminal, a line every few seconds otherwise.

export function progressPrinter(stream: NodeJS.WriteStream = process.stderr): { update(line: string): void; done(): void } {
  let last = 0;
  let shown = false;
  return {
    update(line: string) {
      const now = Date.now();
      if (stream.isTTY) {
        stream.write(`\r\x1b[2K${line}`);
        shown = true;
      } else if (now - last > 5000) {
        stream.write(`${line}\n`);
        last = now;
      }
    },
    done() {
      if (shown) stream.write('\n');
      shown = false;
    },
  };
}
