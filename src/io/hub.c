#include "io/hub.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int is_dir(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static int is_file(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

static void hub_root(char *out, size_t cap) {
    const char *hf = getenv("HF_HOME");
    if (hf && *hf) {
        snprintf(out, cap, "%s/hub", hf);
        return;
    }
    const char *home = getenv("HOME");
    snprintf(out, cap, "%s/.cache/huggingface/hub", home && *home ? home : ".");
}

// The snapshot directory of repo at revision rev (a ref name or commit), or,
// without a revision, the snapshot "main" points to, else the only one.
static ty_status find_snapshot(const char *repo, const char *rev, char *out, size_t cap, ty_err *err) {
    char root[HUB_PATH_MAX], base[HUB_PATH_MAX];
    hub_root(root, sizeof root);
    const char *slash = strchr(repo, '/');
    snprintf(base, sizeof base, "%s/models--%.*s--%s", root, (int)(slash - repo), repo, slash + 1);
    if (!is_dir(base))
        return ty_err_set(err, TY_E_NOT_FOUND, "model '%s' is neither a directory nor in the Hugging Face cache (%s)",
                          repo, base);
    char ref[HUB_PATH_MAX], commit[128] = "";
    snprintf(ref, sizeof ref, "%s/refs/%s", base, rev ? rev : "main");
    FILE *f = fopen(ref, "r");
    if (f) {
        if (fscanf(f, "%127s", commit) != 1) commit[0] = '\0';
        fclose(f);
    } else if (rev) {
        snprintf(commit, sizeof commit, "%s", rev);  // a commit hash
    }
    if (commit[0]) {
        snprintf(out, cap, "%s/snapshots/%s", base, commit);
        if (is_dir(out)) return TY_OK;
        return ty_err_set(err, TY_E_NOT_FOUND, "%s: revision '%s' is not in the cache", repo, rev ? rev : "main");
    }
    char snaps[HUB_PATH_MAX];
    snprintf(snaps, sizeof snaps, "%s/snapshots", base);
    DIR *d = opendir(snaps);
    int found = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        snprintf(out, cap, "%s/%s", snaps, e->d_name);
        found++;
    }
    if (d) closedir(d);
    if (found == 1) return TY_OK;
    return ty_err_set(err, TY_E_NOT_FOUND, "%s: %s snapshot in the cache; name one with %s@<revision>", repo,
                      found ? "more than one" : "no", repo);
}

ty_status hub_resolve(const char *model, hub_paths *out, ty_err *err) {
    memset(out, 0, sizeof *out);
    if (!model || !*model) return ty_err_set(err, TY_E_ARG, "no model given");
    if (is_dir(model)) {
        snprintf(out->model_dir, sizeof out->model_dir, "%s", model);
        snprintf(out->tokenizer, sizeof out->tokenizer, "%s/tokenizer.json", model);
        if (!is_file(out->tokenizer))
            return ty_err_set(err, TY_E_NOT_FOUND, "%s: no tokenizer.json beside the model", model);
        return TY_OK;
    }
    const char *slash = strchr(model, '/');
    if (!slash || slash == model || strchr(slash + 1, '/') || strstr(model, ".."))
        return ty_err_set(err, TY_E_NOT_FOUND, "model '%s': no such directory (or owner/name repo id)", model);
    char repo[512], rev[256] = "";
    snprintf(repo, sizeof repo, "%s", model);
    char *at = strchr(repo, '@');
    if (at) {
        snprintf(rev, sizeof rev, "%s", at + 1);
        *at = '\0';
    }
    ty_status s = find_snapshot(repo, rev[0] ? rev : NULL, out->model_dir, sizeof out->model_dir, err);
    if (s != TY_OK) return s;
    // The 2025 Moondream 2 revisions use moondream/starmie-v1's tokenizer, not
    // the stale one bundled in the model repo (moondream.md §13).
    if (!strcmp(repo, "vikhyatk/moondream2") || !strcmp(repo, "moondream/moondream3-preview")) {
        char tdir[HUB_PATH_MAX];
        if (find_snapshot("moondream/starmie-v1", NULL, tdir, sizeof tdir, err) == TY_OK) {
            snprintf(out->tokenizer, sizeof out->tokenizer, "%s/tokenizer.json", tdir);
            if (is_file(out->tokenizer)) return TY_OK;
        }
        return ty_err_set(err, TY_E_NOT_FOUND, "%s needs the tokenizer of moondream/starmie-v1 in the HF cache", repo);
    }
    snprintf(out->tokenizer, sizeof out->tokenizer, "%s/tokenizer.json", out->model_dir);
    if (!is_file(out->tokenizer)) return ty_err_set(err, TY_E_NOT_FOUND, "%s: no tokenizer.json in the snapshot", repo);
    return TY_OK;
}
