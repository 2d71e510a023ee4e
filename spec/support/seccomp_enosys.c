/*
 * seccomp_enosys.c -- run a program with chosen syscalls failing with ENOSYS, as on
 * an older kernel or under an older container runtime's seccomp profile.
 *
 *   seccomp-enosys close_range[,clone3,...] PROGRAM [ARGS...]
 *   seccomp-enosys setresuid=0 PROGRAM ...   returns 0 without doing anything: a
 *                                            credential change that does not take
 *
 * The filter is inherited across exec and fork. Exit 77 when this architecture or
 * kernel cannot do it.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#if defined(__x86_64__)
#define ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define ARCH AUDIT_ARCH_AARCH64
#elif defined(__i386__)
#define ARCH AUDIT_ARCH_I386
#endif

static const struct { const char *name; long nr; } calls[] = {
#ifdef SYS_close_range
  {"close_range", SYS_close_range},
#endif
#ifdef SYS_clone3
  {"clone3", SYS_clone3},
#endif
#ifdef SYS_pidfd_open
  {"pidfd_open", SYS_pidfd_open},
#endif
  {"signalfd4", SYS_signalfd4},
  {"setresuid", SYS_setresuid},
  {"setresgid", SYS_setresgid},
  {"setgroups", SYS_setgroups},
  {NULL, 0}
};

int main(int argc, char **argv) {
#ifndef ARCH
  (void)argc; (void)argv;
  fprintf(stderr, "seccomp-enosys: unsupported architecture\n");
  return 77;
#else
  if (argc < 3) {
    fprintf(stderr, "usage: seccomp-enosys SYSCALL[,SYSCALL...] PROGRAM [ARGS...]\n");
    return 2;
  }
  struct sock_filter f[64];
  int n = 0;
  f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
  f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ARCH, 1, 0);
  f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
  f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
  char list[256];
  snprintf(list, sizeof list, "%s", argv[1]);
  for (char *save = NULL, *name = strtok_r(list, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
    unsigned err = ENOSYS;
    char *eq = strchr(name, '=');
    if (eq) {
      *eq = '\0';
      err = (unsigned)atoi(eq + 1);
    }
    int k = 0;
    while (calls[k].name && strcmp(calls[k].name, name) != 0) k++;
    if (!calls[k].name || n > 58) {
      fprintf(stderr, "seccomp-enosys: unknown syscall %s\n", name);
      return 2;
    }
    f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)calls[k].nr, 0, 1);
    f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (err & 0xffff));
  }
  f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
  struct sock_fprog prog = { (unsigned short)n, f };
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0) {
    perror("seccomp-enosys: prctl");
    return 77;
  }
  execvp(argv[2], argv + 2);
  perror("seccomp-enosys: exec");
  return 127;
#endif
}
