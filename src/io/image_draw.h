// Drawing model outputs onto images (the CLI's --draw).
#ifndef TYCHO_IO_IMAGE_DRAW_H
#define TYCHO_IO_IMAGE_DRAW_H

#include "io/image.h"

// Box outlines; boxes are (x_min, y_min, x_max, y_max) normalised to [0, 1]
// (values outside are clipped to the image). A colour per object, cycling.
void image_draw_boxes(image_rgb *img, const double (*boxes)[4], int n);
// Filled dots with a white rim at normalised (x, y).
void image_draw_points(image_rgb *img, const double (*points)[2], int n);

#endif
