/* tiny_true.c -- a static, libc-free `true`: exit(0) in the first instructions.
 * The child costs almost nothing, so a benchmark spawning it measures the spawner.
 * Build: cc -O2 -static -nostdlib -fno-stack-protector -o tiny_true tiny_true.c */
void _start(void) __attribute__((noreturn));
void _start(void) {
#if defined(__x86_64__)
  __asm__ volatile("mov $231, %eax\n\txor %edi, %edi\n\tsyscall");   /* exit_group(0) */
#elif defined(__aarch64__)
  __asm__ volatile("mov x8, #94\n\tmov x0, #0\n\tsvc #0");           /* exit_group(0) */
#else
#error "tiny_true: add the exit_group syscall for this architecture"
#endif
  for (;;) {}
}
