#include "probes/pci_guard.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One guarded call at a time per thread: the jump target, and where its messages go. */
static _Thread_local jmp_buf* guard_jump;
static _Thread_local char* guard_err;
static _Thread_local size_t guard_errlen;
static _Thread_local agent_pci_warning_sink guard_sink;
static _Thread_local void* guard_ctx;

static void guard_error(char* msg, ...) __attribute__((noreturn));
static void guard_error(char* msg, ...) {
  va_list ap;
  va_start(ap, msg);
  if (guard_err && guard_errlen) vsnprintf(guard_err, guard_errlen, msg, ap);
  va_end(ap);
  if (guard_jump) longjmp(*guard_jump, 1);
  /* Not inside a guarded call: a bug in the caller, never silently continue. */
  abort();
}

static void guard_warning(char* msg, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, msg);
  vsnprintf(buf, sizeof buf, msg, ap);
  va_end(ap);
  if (guard_sink) guard_sink(guard_ctx, buf);
}

static void guard_debug(char* msg, ...) { (void)msg; }

struct pci_access* agent_pci_alloc(void) {
  struct pci_access* a = pci_alloc();
  if (!a) return NULL;
  a->error = guard_error;
  a->warning = guard_warning;
  a->debug = guard_debug;
  return a;
}

#define GUARDED(call)                          \
  jmp_buf jump;                                \
  guard_err = err;                             \
  guard_errlen = errlen;                       \
  guard_sink = sink;                           \
  guard_ctx = ctx;                             \
  if (errlen) err[0] = '\0';                   \
  if (setjmp(jump) != 0) {                     \
    guard_jump = NULL;                         \
    guard_sink = NULL;                         \
    return -1;                                 \
  }                                            \
  guard_jump = &jump;                          \
  call;                                        \
  guard_jump = NULL;                           \
  guard_sink = NULL;                           \
  return 0

int agent_pci_init(struct pci_access* a, char* err, size_t errlen, agent_pci_warning_sink sink, void* ctx) {
  GUARDED(pci_init(a));
}

int agent_pci_scan_bus(struct pci_access* a, char* err, size_t errlen, agent_pci_warning_sink sink, void* ctx) {
  GUARDED(pci_scan_bus(a));
}

int agent_pci_fill_info(struct pci_dev* d, int flags, char* err, size_t errlen, agent_pci_warning_sink sink,
                        void* ctx) {
  GUARDED(pci_fill_info(d, flags));
}

int agent_pci_lookup(struct pci_access* a, char* buf, int size, int flags, int vendor, int device, const char** out,
                     char* err, size_t errlen) {
  agent_pci_warning_sink sink = NULL;
  void* ctx = NULL;
  *out = NULL;
  GUARDED(*out = pci_lookup_name(a, buf, size, flags, vendor, device));
}
